"""The funding store: the in-memory twin, SQLite and PostgreSQL keep balances, top-ups, escrows
and budget draws alike, and a reopened SQL store still holds them (a restart loses nothing and
pays nothing twice).

Uses the repository contract's backends (``test_repositories_contract.open_backend``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_core.errors import Conflict
from owm_core.market.funding import (
    Balance,
    FundingRules,
    Payer,
    PeriodBudget,
    TopUp,
    TopUpState,
    close_escrow,
    credit_top_up,
    debit_balance,
    escrow_required_msat,
    fund_client_task,
    fund_network_task,
    settle_replica,
)
from owm_core.ports.repositories import Repositories
from tests.adapters.storage.test_repositories_contract import (  # noqa: F401 (fixtures)
    BACKENDS,
    Backend,
    open_backend,
    sqlite_template,
)

T0 = 1_800_000_000
KEY = "ab" * 32
OTHER = "cd" * 32
RULES = FundingRules(max_price_msat=1_000_000, period_budget_msat=10_000_000)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture
def repos(backend: Backend) -> Repositories:
    return backend.repos


def a_top_up(n: int, key: str = KEY) -> TopUp:
    return TopUp(f"{n:064x}", key, 50_000 + n, f"lnbcrt{n}", T0 + n, T0 + 3600)


def test_a_balance_reads_back_and_is_replaced(repos: Repositories) -> None:
    assert repos.funding.balance(KEY) is None
    top_up = a_top_up(1)
    balance, _ = credit_top_up(Balance(KEY), top_up)
    repos.funding.save_balance(balance)
    spent = debit_balance(balance, 20_000, "t1")
    repos.funding.save_balance(spent)
    assert repos.funding.balance(KEY) == spent
    assert spent.available_msat == 50_001 - 20_000


def test_top_ups_are_unique_listed_oldest_first_and_leave_the_open_list_once_credited(
    repos: Repositories,
) -> None:
    for n in (1, 2, 3):
        repos.funding.add_top_up(a_top_up(n, KEY if n != 2 else OTHER))
    with pytest.raises(Conflict):
        repos.funding.add_top_up(a_top_up(1))
    assert [t.payment_hash for t in repos.funding.open_top_ups()] == [
        a_top_up(n).payment_hash for n in (1, 2, 3)
    ]
    assert [t.public_key for t in repos.funding.open_top_ups(OTHER)] == [OTHER]
    _, credited = credit_top_up(Balance(KEY), a_top_up(1))
    repos.funding.save_top_up(credited)
    assert credited.state is TopUpState.CREDITED
    assert [t.payment_hash for t in repos.funding.open_top_ups(KEY)] == [a_top_up(3).payment_hash]
    with pytest.raises(Conflict):
        repos.funding.save_top_up(a_top_up(9))


def test_open_top_ups_are_walked_in_pages_after_a_position_and_closed_ones_are_skipped(
    repos: Repositories,
) -> None:
    for n in range(1, 6):
        repos.funding.add_top_up(a_top_up(n, KEY if n % 2 else OTHER))
    _, credited = credit_top_up(Balance(KEY), a_top_up(3))
    repos.funding.save_top_up(credited)
    first = repos.funding.open_top_ups_after(limit=2)
    assert [t.payment_hash for _, t in first] == [a_top_up(n).payment_hash for n in (1, 2)]
    rest = repos.funding.open_top_ups_after(after=first[-1][0], limit=2)
    assert [t.payment_hash for _, t in rest] == [a_top_up(n).payment_hash for n in (4, 5)]
    assert first[-1][0] < rest[0][0] < rest[-1][0]
    assert repos.funding.open_top_ups_after(after=rest[-1][0]) == []
    repos.funding.save_top_up(attrs.evolve(a_top_up(4, OTHER), state=TopUpState.EXPIRED))
    assert [p for p, _ in repos.funding.open_top_ups_after(after=first[-1][0])] == [rest[1][0]]


def test_payable_top_ups_are_the_open_unexpired_ones_of_every_key(repos: Repositories) -> None:
    for n in (1, 2, 3):
        repos.funding.add_top_up(a_top_up(n, KEY if n != 2 else OTHER))
    assert repos.funding.count_payable_top_ups(T0) == 3
    _, credited = credit_top_up(Balance(KEY), a_top_up(1))
    repos.funding.save_top_up(credited)
    assert repos.funding.count_payable_top_ups(T0) == 2
    expired = attrs.evolve(a_top_up(3), state=TopUpState.EXPIRED)
    repos.funding.save_top_up(expired)
    assert repos.funding.count_payable_top_ups(T0) == 1
    assert repos.funding.count_payable_top_ups(T0 + 3599) == 1
    assert repos.funding.count_payable_top_ups(T0 + 3600) == 0  # past its expiry: unpayable


def test_an_escrow_reads_back_equal_through_its_whole_life(repos: Repositories) -> None:
    required = escrow_required_msat(10_000, 3, Payer.CLIENT, RULES)
    escrow = fund_client_task("t1", 10_000, 3, required, RULES, funder=KEY, opened_at=T0)
    repos.funding.add_escrow(escrow)
    with pytest.raises(Conflict):
        repos.funding.add_escrow(escrow)
    assert repos.funding.escrow("t1") == escrow
    paid, _ = settle_replica(escrow, "t1:0", 7_500)
    repos.funding.save_escrow(paid)
    assert repos.funding.escrow("t1") == paid
    assert [e.task_id for _, e in repos.funding.open_escrows()] == ["t1"]
    closed, _ = close_escrow(paid)
    repos.funding.save_escrow(closed)
    assert repos.funding.escrow("t1") == closed
    assert repos.funding.open_escrows() == []
    assert repos.funding.escrow("t2") is None


def test_open_escrows_are_walked_in_pages_after_a_position_that_updates_do_not_move(
    repos: Repositories,
) -> None:
    required = escrow_required_msat(10_000, 1, Payer.CLIENT, RULES)
    escrows = [
        fund_client_task(f"t{n}", 10_000, 1, required, RULES, funder=KEY, opened_at=T0 + n)
        for n in range(5)
    ]
    for escrow in escrows:
        repos.funding.add_escrow(escrow)
    repos.funding.save_escrow(close_escrow(escrows[1])[0])
    repos.funding.save_escrow(settle_replica(escrows[0], "t0:0", 5_000)[0])  # keeps its place
    first = repos.funding.open_escrows(limit=2)
    assert [e.task_id for _, e in first] == ["t0", "t2"]
    rest = repos.funding.open_escrows(after=first[-1][0], limit=2)
    assert [e.task_id for _, e in rest] == ["t3", "t4"]
    assert first[0][0] < first[-1][0] < rest[0][0] < rest[-1][0]
    assert repos.funding.open_escrows(after=rest[-1][0]) == []


def test_budget_draws_are_kept_per_name(repos: Repositories) -> None:
    assert repos.funding.budget("network") is None
    budget, escrow = fund_network_task(PeriodBudget(0), "n1", 1_000, 3, T0, RULES, funder="fl")
    repos.funding.save_budget("network", budget)
    repos.funding.save_budget("queries", PeriodBudget(budget.period, 5))
    repos.funding.save_budget("network", PeriodBudget(budget.period, 9_000))
    assert repos.funding.budget("network") == PeriodBudget(budget.period, 9_000)
    assert repos.funding.budget("queries") == PeriodBudget(budget.period, 5)
    repos.funding.add_escrow(escrow)
    assert repos.funding.escrow("n1") == escrow


def test_a_debit_and_its_escrow_commit_together_or_not_at_all(repos: Repositories) -> None:
    repos.funding.save_balance(credit_top_up(Balance(KEY), a_top_up(1))[0])
    escrow = fund_client_task("t1", 100, 1, 105, RULES, funder=KEY, opened_at=T0)
    repos.funding.add_escrow(escrow)
    with pytest.raises(Conflict), repos.atomic():
        balance = repos.funding.balance(KEY)
        assert balance is not None
        repos.funding.save_balance(debit_balance(balance, 105, "t1"))
        repos.funding.add_escrow(escrow)  # the task already has one: nothing may stick
    stored = repos.funding.balance(KEY)
    assert stored is not None and stored.escrowed_msat == 0


def test_a_reopened_store_still_holds_balances_escrows_top_ups_and_draws(
    backend: Backend,
) -> None:
    repos = backend.repos
    balance, credited = credit_top_up(Balance(KEY), a_top_up(1))
    repos.funding.add_top_up(a_top_up(1))
    repos.funding.save_top_up(credited)
    repos.funding.save_balance(debit_balance(balance, 105, "t1"))
    repos.funding.add_escrow(fund_client_task("t1", 100, 1, 105, RULES, funder=KEY, opened_at=T0))
    repos.funding.save_budget("network", PeriodBudget(3, 42))
    again = backend.reopen()
    assert again.funding.balance(KEY) == repos.funding.balance(KEY)
    assert again.funding.escrow("t1") == repos.funding.escrow("t1")
    assert again.funding.open_top_ups() == []  # credited once: never credited again
    assert again.funding.budget("network") == PeriodBudget(3, 42)
