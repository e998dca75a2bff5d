"""Challenges, used nonces, rate-limit logs, payouts awaiting invoices, daily quotas and open
task streams: the state several coordinators on one database share (SRS-COORD-05). The
in-memory twin, SQLite and PostgreSQL keep them alike, and each one-use step gives its one use
to exactly one of many concurrent callers.

Uses the repository contract's fixtures (``backend``, ``repos``), imported: each test's
``repos`` argument names that fixture (hence F811 off in this file).
"""
# ruff: noqa: F811

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import attrs

from owm_core.access.ratelimit import RateLimit, SlidingWindowLimiter
from owm_core.coordination.challenges import Challenge, ChallengePurpose
from owm_core.market.streams import OpenStream
from owm_core.market.tasks import NodeOffer
from owm_core.nodes.tiers import Tier
from owm_core.payments.invoices import PendingPayout
from owm_core.payments.lightning import Invoice, InvoiceState
from owm_core.ports.repositories import Repositories
from tests.adapters.storage.test_repositories_contract import (  # noqa: F401 (fixtures)
    backend,
    identity,
    repos,
    sqlite_template,
)

T0 = 1_800_000_000
CALLERS = 8


def a_challenge(i: int, issued_at: int = T0, ttl_s: int = 120) -> Challenge:
    return Challenge(
        identity(i).public_key_hex, ChallengePurpose.REGISTER, f"{i:064x}", issued_at,
        issued_at + ttl_s,
    )


def test_a_challenge_is_taken_once_and_then_is_gone(repos: Repositories) -> None:
    challenge = a_challenge(1)
    repos.challenges.add(challenge, keep=10)
    assert len(repos.challenges) == 1
    assert repos.challenges.take(challenge.nonce) == challenge
    assert repos.challenges.take(challenge.nonce) is None
    assert len(repos.challenges) == 0


def test_expired_challenges_are_forgotten_and_the_oldest_go_beyond_the_bound(
    repos: Repositories,
) -> None:
    for i in range(6):
        repos.challenges.add(a_challenge(i, issued_at=T0 + i), keep=4)
    assert len(repos.challenges) == 4
    assert repos.challenges.take(a_challenge(1).nonce) is None  # among the two oldest
    assert repos.challenges.forget_expired(T0 + 3 + 120 + 1) == 2  # issued at T0+2 and T0+3
    assert len(repos.challenges) == 2
    assert repos.challenges.take(a_challenge(5).nonce) is not None


def test_of_many_coordinators_redeeming_one_challenge_exactly_one_gets_it(
    repos: Repositories,
) -> None:
    challenge = a_challenge(7)
    repos.challenges.add(challenge, keep=100)
    with ThreadPoolExecutor(CALLERS) as pool:
        taken = list(pool.map(lambda _: repos.challenges.take(challenge.nonce), range(CALLERS)))
    assert [c for c in taken if c is not None] == [challenge]


def test_a_nonce_is_claimed_once_until_it_expires(repos: Repositories) -> None:
    signer = identity(1).public_key_hex
    assert repos.nonces.claim(signer, "ab" * 16, T0 + 600)
    assert not repos.nonces.claim(signer, "ab" * 16, T0 + 600)
    assert repos.nonces.claim(identity(2).public_key_hex, "ab" * 16, T0 + 600)
    assert repos.nonces.forget_expired(T0 + 600) == 0
    assert repos.nonces.forget_expired(T0 + 601) == 2
    assert repos.nonces.claim(signer, "ab" * 16, T0 + 1200)


def test_of_many_coordinators_claiming_one_nonce_exactly_one_succeeds(
    repos: Repositories,
) -> None:
    signer = identity(3).public_key_hex
    with ThreadPoolExecutor(CALLERS) as pool:
        claimed = list(pool.map(lambda _: repos.nonces.claim(signer, "cd" * 16, T0), range(16)))
    assert claimed.count(True) == 1


def test_a_shared_rate_log_admits_what_the_memory_limiter_admits(repos: Repositories) -> None:
    rate = RateLimit(limit=3, window_s=60)
    shared = SlidingWindowLimiter(rate, ledger=repos.rate_log, scope="registration")
    local = SlidingWindowLimiter(rate)
    for now in (T0, T0 + 1, T0 + 2, T0 + 3, T0 + 59, T0 + 61, T0 + 62, T0 + 62, T0 + 200):
        assert shared.admit("10.0.0.1", now) == local.admit("10.0.0.1", now), now
    other = SlidingWindowLimiter(rate, ledger=repos.rate_log, scope="other")
    assert other.admit("10.0.0.1", T0 + 200).remaining == 2


def test_concurrent_requests_through_a_shared_limit_admit_exactly_the_limit(
    repos: Repositories,
) -> None:
    rate = RateLimit(limit=5, window_s=3_600)

    def admit(_: int) -> bool:
        limiter = SlidingWindowLimiter(rate, ledger=repos.rate_log, scope="registration")
        return limiter.admit("203.0.113.9", T0).admitted

    with ThreadPoolExecutor(CALLERS) as pool:
        admitted = list(pool.map(admit, range(20)))
    assert admitted.count(True) == 5


def test_a_locked_round_holds_other_coordinators_writes_until_the_holder_commits(
    repos: Repositories,
) -> None:
    import threading
    import time

    order: list[str] = []
    holding = threading.Event()

    def holder() -> None:
        with repos.atomic():
            repos.commitments.lock_round("round-1")
            holding.set()
            time.sleep(0.3)
            order.append("holder done")

    def other() -> None:
        holding.wait(5)
        with repos.atomic():
            repos.commitments.lock_round("round-1")
            order.append("other in")

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["holder done", "other in"]


def test_claiming_many_nonces_records_the_new_ones_once_and_reports_exactly_them(
    repos: Repositories,
) -> None:
    one, two = identity(4).public_key_hex, identity(5).public_key_hex
    assert repos.nonces.claim(one, "01" * 16, T0 + 600)
    claimed = repos.nonces.claim_many([
        (one, "01" * 16, T0 + 600),  # held already
        (one, "02" * 16, T0 + 600),
        (two, "01" * 16, T0 + 600),
        (one, "02" * 16, T0 + 600),  # named twice: claimed once
    ])
    assert claimed == {(one, "02" * 16), (two, "01" * 16)}
    assert repos.nonces.claim_many([]) == set()
    assert not repos.nonces.claim(two, "01" * 16, T0 + 600)
    assert repos.nonces.forget_expired(T0 + 601) == 3


def test_of_many_coordinators_claiming_one_batch_each_pair_goes_to_exactly_one(
    repos: Repositories,
) -> None:
    signer = identity(6).public_key_hex
    batch = [(signer, f"{i:032x}", T0) for i in range(20)]
    with ThreadPoolExecutor(CALLERS) as pool:
        results = list(pool.map(lambda _: repos.nonces.claim_many(batch), range(CALLERS)))
    every = [pair for claimed in results for pair in claimed]
    assert sorted(every) == sorted((s, n) for s, n, _ in batch)


def a_payout(i: int, requested_at: int = T0) -> PendingPayout:
    return PendingPayout(
        payment_id=f"{i:032x}", payee_pubkey="02" + f"{i % 4:02x}" * 32, amount_msat=1_000 + i,
        memo=f"OWM reward t{i}:0", expiry_s=3_600, requested_at=requested_at,
    )


def an_invoice(payout: PendingPayout) -> Invoice:
    return Invoice(bolt11="lnbcrt1" + "q" * 40, payment_hash=f"{payout.amount_msat:064x}",
                   amount_msat=payout.amount_msat, expiry_s=3_600, created_at=T0,
                   state=InvoiceState.OPEN, memo=payout.memo)


def test_a_payout_awaits_its_invoice_until_one_is_handed_in_and_taken_once(
    repos: Repositories,
) -> None:
    requests = repos.payout_requests
    payout = a_payout(1)
    requests.request(payout, keep=10)
    requests.request(payout, keep=10)  # asked again: still one
    assert requests.waiting_for(payout.payee_pubkey) == [payout] == list(requests.waiting())
    assert requests.get(payout.payment_id) == payout
    assert requests.take_invoice(payout.payment_id) is None  # none handed in: kept

    invoice = an_invoice(payout)
    requests.hand_in(payout.payment_id, invoice)

    assert requests.waiting_for(payout.payee_pubkey) == []
    assert requests.get(payout.payment_id) is None
    assert requests.take_invoice(payout.payment_id) == invoice
    assert requests.take_invoice(payout.payment_id) is None


def test_a_payout_paid_another_way_is_withdrawn_waiting_or_invoiced_and_only_once(
    repos: Repositories,
) -> None:
    requests = repos.payout_requests
    waiting, invoiced, other = a_payout(1), a_payout(2), a_payout(3)
    for payout in (waiting, invoiced, other):
        requests.request(payout, keep=10)
    requests.hand_in(invoiced.payment_id, an_invoice(invoiced))
    assert requests.withdraw(waiting.payment_id) is True
    assert requests.withdraw(invoiced.payment_id) is True
    assert requests.withdraw(waiting.payment_id) is False  # idempotent
    assert list(requests.waiting()) == [other]
    assert requests.take_invoice(invoiced.payment_id) is None  # its invoice is gone too


def test_a_withdrawal_inside_a_transaction_that_fails_is_undone(repos: Repositories) -> None:
    payout = a_payout(1)
    repos.payout_requests.request(payout, keep=10)
    try:
        with repos.atomic():
            assert repos.payout_requests.withdraw(payout.payment_id)
            raise RuntimeError("crash before the commit")
    except RuntimeError:
        pass
    assert list(repos.payout_requests.waiting()) == [payout]


def test_payouts_awaiting_invoices_are_bounded_oldest_first(repos: Repositories) -> None:
    for i in range(6):
        repos.payout_requests.request(a_payout(i, requested_at=T0 + i), keep=4)
    assert [p.payment_id for p in repos.payout_requests.waiting()] == [
        f"{i:032x}" for i in range(2, 6)
    ]


def test_a_quota_counts_each_use_up_to_its_limit_per_key_and_day_and_forgets_old_days(
    repos: Repositories,
) -> None:
    day = T0 // 86_400
    assert [repos.quotas.spend("api/paid", "k", day, 2) for _ in range(3)] == [1, 2, None]
    assert repos.quotas.spend("api/paid", "other", day, 2) == 1
    assert repos.quotas.spend("api/writes", "k", day, 2) == 1
    assert repos.quotas.spend("api/paid", "k", day + 1, 2) == 1
    assert repos.quotas.forget_before(day + 1) == 3
    assert repos.quotas.spend("api/paid", "k", day, 2) == 1  # that day's counters are gone


def test_of_many_coordinators_spending_one_quota_at_once_exactly_the_limit_get_a_count(
    repos: Repositories,
) -> None:
    with ThreadPoolExecutor(CALLERS) as pool:
        counts = list(pool.map(lambda _: repos.quotas.spend("api/paid", "k", 1, 5), range(20)))
    assert sorted(c for c in counts if c is not None) == [1, 2, 3, 4, 5]


def test_a_quota_spends_amounts_only_while_they_fit_and_takes_back_what_was_not_used(
    repos: Repositories,
) -> None:
    day = T0 // 86_400
    spent = [repos.quotas.spend("api/share", "k", day, 100, amount) for amount in (60, 50, 40)]
    assert spent == [60, None, 100]  # 50 would pass the limit: refused whole, nothing counted
    assert repos.quotas.spend("api/share", "k", day, 100, 101) is None
    repos.quotas.give_back("api/share", "k", day, 70)
    assert repos.quotas.spend("api/share", "k", day, 100, 70) == 100
    repos.quotas.give_back("api/share", "k", day, 1_000)  # never below nothing
    assert repos.quotas.spend("api/share", "k", day, 100, 1) == 1
    repos.quotas.give_back("api/share", "never-spent", day, 5)
    assert repos.quotas.spend("api/share", "never-spent", day, 100, 100) == 100


def test_of_many_coordinators_spending_amounts_at_once_never_more_than_the_limit_is_counted(
    repos: Repositories,
) -> None:
    with ThreadPoolExecutor(CALLERS) as pool:
        counts = list(pool.map(lambda _: repos.quotas.spend("api/share", "k", 1, 100, 30),
                               range(12)))
    assert sorted(c for c in counts if c is not None) == [30, 60, 90]


def a_stream(i: int, stream_id: str, seen_at: int, coordinator: str = "host/1") -> OpenStream:
    offer = NodeOffer(
        node_id=identity(i).node_id, capabilities={"fl_training", "inference"}, tier=Tier.T2,
        has_gpu=True, vram_mb=8_000, ram_mb=16_000, ask_msat=500, reliability_ppm=990_000,
    )
    return OpenStream(offer, stream_id, coordinator, opened_at=T0, seen_at=seen_at)


def test_a_nodes_open_stream_is_stored_with_its_offer_and_a_newer_stream_replaces_it(
    repos: Repositories,
) -> None:
    first = a_stream(1, "s1", T0)
    repos.task_streams.put(first)
    assert repos.task_streams.seen_since(T0) == [first]
    moved = a_stream(1, "s2", T0 + 3, coordinator="host/2")
    repos.task_streams.put(moved)
    assert repos.task_streams.seen_since(0) == [moved]
    assert repos.task_streams.remove(moved.node_id, "s1") is False  # the old one closing late
    assert repos.task_streams.seen_since(0) == [moved]
    assert repos.task_streams.remove(moved.node_id, "s2") is True
    assert repos.task_streams.seen_since(0) == []


def test_a_refresh_confirms_its_own_streams_and_never_overwrites_a_nodes_newer_stream(
    repos: Repositories,
) -> None:
    mine, theirs = a_stream(1, "a1", T0), a_stream(2, "b2", T0 + 5, coordinator="host/2")
    repos.task_streams.put(mine)
    repos.task_streams.put(theirs)
    stale_copy_of_2 = a_stream(2, "a2", T0)  # node 2 left this coordinator for host/2
    gone_record_of_3 = a_stream(3, "a3", T0)  # its record was forgotten: stored again

    repos.task_streams.refresh([mine, stale_copy_of_2, gone_record_of_3], T0 + 10)

    stored = {s.node_id: s for s in repos.task_streams.seen_since(0)}
    assert stored[mine.node_id] == attrs.evolve(mine, seen_at=T0 + 10)
    assert stored[theirs.node_id] == theirs
    assert stored[gone_record_of_3.node_id] == attrs.evolve(gone_record_of_3, seen_at=T0 + 10)


def test_streams_not_seen_lately_are_not_listed_and_are_forgotten(repos: Repositories) -> None:
    old, new = a_stream(1, "s1", T0), a_stream(2, "s2", T0 + 20)
    repos.task_streams.put(old)
    repos.task_streams.put(new)
    assert repos.task_streams.seen_since(T0 + 5) == [new]
    assert repos.task_streams.forget_before(T0 + 5) == 1
    assert repos.task_streams.seen_since(0) == [new]


def test_a_tokens_credit_is_set_once_spent_per_query_refunded_and_forgotten_at_expiry(
    repos: Repositories,
) -> None:
    credits = repos.token_credits
    assert credits.charge("t1", 1_000, T0) is None  # unknown: nothing taken
    credits.open("t1", 2_500, T0 + 100)
    credits.open("t1", 9_999, T0 + 900)  # using the token again refills nothing
    assert [credits.charge("t1", 1_000, T0) for _ in range(3)] == [1_500, 500, None]
    credits.refund("t1", 1_000)
    assert credits.charge("t1", 1_000, T0) == 500
    assert credits.charge("t1", 100, T0 + 100) is None  # its access ended
    credits.open("t2", 5_000, T0 + 200)
    assert credits.forget_expired(T0 + 100) == 1
    assert credits.charge("t2", 1_000, T0) == 4_000


def test_of_many_coordinators_charging_one_token_at_once_only_its_credit_is_spent(
    repos: Repositories,
) -> None:
    repos.token_credits.open("t", 5_000, T0 + 100)
    with ThreadPoolExecutor(CALLERS) as pool:
        left = list(pool.map(lambda _: repos.token_credits.charge("t", 1_000, T0), range(20)))
    assert sorted(x for x in left if x is not None) == [0, 1_000, 2_000, 3_000, 4_000]
