"""Per-query pricing's credit (SRS-API-03): a token never gets more queries than it paid for,
in one coordinator's memory or in the store several coordinators share (SRS-COORD-05)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.services.api.quotas import QueryCredit
from owm_adapters.storage.memory import memory_repositories

T0 = 1_800_000_000


@given(
    price=st.integers(1, 5_000),
    paid=st.integers(0, 50_000),
    steps=st.lists(st.sampled_from(["charge", "refund", "reopen"]), max_size=60),
    shared=st.booleans(),
)
@settings(max_examples=200)
def test_a_token_never_spends_more_than_its_invoice_paid(
    price: int, paid: int, steps: list[str], shared: bool
) -> None:
    # shared: the credit lives in the store several coordinators share (its in-memory twin)
    credit = QueryCredit(price, ledger=memory_repositories().token_credits if shared else None)
    credit.open("token", paid, T0 + 86_400)
    answered = 0
    for step in steps:
        if step == "charge":
            if credit.charge("token", T0) is not None:
                answered += 1
        elif step == "refund" and answered:
            credit.refund("token")
            answered -= 1
        else:
            credit.open("token", paid, T0 + 86_400)  # using the token again refills nothing
        assert answered * price <= paid


def test_an_unknown_or_expired_token_is_charged_nothing() -> None:
    credit = QueryCredit(1_000)
    assert credit.charge("stranger", T0) is None
    credit.open("token", 5_000, T0 + 10)
    assert credit.charge("token", T0) == 4_000
    assert credit.charge("token", T0 + 10) is None


def test_the_oldest_tokens_are_forgotten_beyond_the_bound() -> None:
    credit = QueryCredit(1_000, max_tokens=2)
    for name in ("a", "b", "c"):
        credit.open(name, 5_000, T0 + 86_400)
    assert credit.charge("a", T0) is None
    assert credit.charge("c", T0) == 4_000
