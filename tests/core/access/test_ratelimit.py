"""Sliding-window rate limits: exactness, no over-restriction, presets, keys, bounded memory."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.access.ratelimit import (
    API_KEY_FREE_TIER,
    ONION_REGISTRATION_PER_NODE_KEY,
    REGISTRATION_PER_IP,
    Admission,
    RateLimit,
    SlidingWindowLimiter,
    Transport,
    ip_key,
    node_key,
    registration_key,
    registration_limit,
)
from owm_core.errors import InvalidValue, RateLimited
from owm_core.identity.keys import Identity

T0 = 1_700_000_000
HALF: Any = 0.5  # a float where an int is required

limits = st.builds(RateLimit, limit=st.integers(1, 5), window_s=st.integers(1, 50))
gaps = st.lists(st.tuples(st.integers(0, 20), st.sampled_from(["a", "b"])), max_size=60)


def _replay(rate: RateLimit, steps: list[tuple[int, str]]) -> list[tuple[int, str, Admission]]:
    limiter = SlidingWindowLimiter(rate)
    now = T0
    results = []
    for gap, key in steps:
        now += gap
        results.append((now, key, limiter.admit(key, now)))
    return results


@given(rate=limits, steps=gaps)
@settings(max_examples=200)
def test_no_window_of_length_w_ever_holds_more_than_n_admissions(
    rate: RateLimit, steps: list[tuple[int, str]]
) -> None:
    results = _replay(rate, steps)
    for key in ("a", "b"):
        admitted = [t for t, k, a in results if k == key and a.admitted]
        for start in admitted:
            in_window = [t for t in admitted if start <= t < start + rate.window_s]
            assert len(in_window) <= rate.limit


@given(rate=limits, steps=gaps)
@settings(max_examples=200)
def test_a_request_is_admitted_whenever_the_last_window_has_room(
    rate: RateLimit, steps: list[tuple[int, str]]
) -> None:
    results = _replay(rate, steps)
    for i, (now, key, admission) in enumerate(results):
        before = [
            t for t, k, a in results[:i] if k == key and a.admitted and t > now - rate.window_s
        ]
        assert admission.admitted == (len(before) < rate.limit)
        if admission.admitted:
            assert admission.remaining == rate.limit - len(before) - 1
            assert admission.retry_after_s == 0
        else:
            assert admission.remaining == 0
            assert admission.retry_after_s == min(before) + rate.window_s - now >= 1


@given(rate=limits, steps=gaps)
@settings(max_examples=100)
def test_after_a_full_window_of_silence_the_whole_quota_is_back(
    rate: RateLimit, steps: list[tuple[int, str]]
) -> None:
    limiter = SlidingWindowLimiter(rate)
    now = T0
    for gap, key in steps:
        now += gap
        limiter.admit(key, now)
    now += rate.window_s
    for used in range(rate.limit):
        assert limiter.admit("a", now) == Admission(True, rate.limit - used - 1, 0)
    assert not limiter.admit("a", now).admitted


def test_waiting_retry_after_seconds_is_enough() -> None:
    limiter = SlidingWindowLimiter(RateLimit(limit=2, window_s=10))
    limiter.admit("k", T0)
    limiter.admit("k", T0 + 3)
    refused = limiter.admit("k", T0 + 5)
    assert refused == Admission(admitted=False, remaining=0, retry_after_s=5)
    assert not limiter.admit("k", T0 + 5 + refused.retry_after_s - 1).admitted
    assert limiter.admit("k", T0 + 5 + refused.retry_after_s).admitted


def test_enforce_raises_rate_limited_with_retry_after() -> None:
    limiter = SlidingWindowLimiter(RateLimit(limit=1, window_s=60))
    limiter.enforce("k", T0)
    with pytest.raises(RateLimited) as caught:
        limiter.enforce("k", T0 + 20)
    assert caught.value.retry_after_s == 40


def test_keys_are_limited_independently() -> None:
    limiter = SlidingWindowLimiter(RateLimit(limit=1, window_s=60))
    assert limiter.admit("alice", T0).admitted
    assert limiter.admit("bob", T0).admitted
    assert not limiter.admit("alice", T0).admitted


def test_a_clock_stepping_back_never_admits_more() -> None:
    limiter = SlidingWindowLimiter(RateLimit(limit=2, window_s=10))
    assert limiter.admit("k", T0 + 100).admitted
    assert limiter.admit("k", T0 + 105).admitted
    assert not limiter.admit("k", T0).admitted
    assert not limiter.admit("k", T0 + 109).admitted


def test_memory_stays_bounded_by_the_keys_active_within_one_window() -> None:
    rate = RateLimit(limit=3, window_s=10)
    limiter = SlidingWindowLimiter(rate)
    for i in range(2_000):
        limiter.admit(f"client-{i}", T0 + i)
        limiter.admit("hot", T0 + i)
        assert len(limiter) <= rate.window_s + 1
    assert all(len(stamps) <= rate.limit for stamps in limiter._log.values())


# --- presets and keys ---------------------------------------------------------------------


def test_the_free_api_tier_allows_100_requests_a_day() -> None:
    limiter = SlidingWindowLimiter(API_KEY_FREE_TIER)
    for i in range(100):
        assert limiter.admit("api-key-1", T0 + i).admitted
    refused = limiter.admit("api-key-1", T0 + 100)
    assert not refused.admitted
    assert refused.retry_after_s == 86_400 - 100
    assert limiter.admit("api-key-1", T0 + 86_400).admitted


def test_one_ip_may_register_ten_nodes_an_hour() -> None:
    assert (REGISTRATION_PER_IP.limit, REGISTRATION_PER_IP.window_s) == (10, 3_600)
    limiter = SlidingWindowLimiter(REGISTRATION_PER_IP)
    key = registration_key(Transport.CLEARNET, "203.0.113.9", "00" * 32)
    assert [limiter.admit(key, T0 + i).admitted for i in range(11)] == [True] * 10 + [False]


def test_onion_registrations_are_keyed_by_node_key_because_tor_clients_share_localhost() -> None:
    alice = Identity.from_seed(b"\x01" * 32).public_key_hex
    bob = Identity.from_seed(b"\x02" * 32).public_key_hex
    via_tor_a = registration_key(Transport.ONION, "127.0.0.1", alice)
    via_tor_b = registration_key(Transport.ONION, "127.0.0.1", bob)
    assert via_tor_a != via_tor_b
    assert via_tor_a == node_key(alice) == f"node:{alice}"
    assert registration_limit(Transport.ONION) is ONION_REGISTRATION_PER_NODE_KEY
    assert registration_limit(Transport.CLEARNET) is REGISTRATION_PER_IP
    limiter = SlidingWindowLimiter(ONION_REGISTRATION_PER_NODE_KEY)
    for i in range(10):
        assert limiter.admit(via_tor_a, T0 + i).admitted
    assert not limiter.admit(via_tor_a, T0 + 10).admitted
    assert limiter.admit(via_tor_b, T0 + 10).admitted


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.9", "ip:203.0.113.9"),
        ("::ffff:203.0.113.9", "ip:203.0.113.9"),
        ("2001:db8:1:2:aaaa::1", "ip:2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::7", "ip:2001:db8:1:2::/64"),
    ],
)
def test_clearnet_keys_are_the_ipv4_address_or_the_ipv6_slash_64(ip: str, key: str) -> None:
    assert ip_key(ip) == key


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda: ip_key("example.com"), "client_ip"),
        (lambda: registration_key(Transport.CLEARNET, None, "00" * 32), "client_ip"),
        (lambda: registration_key(Transport.ONION, "127.0.0.1", "zz"), "node_public_key"),
        (lambda: RateLimit(limit=0, window_s=10), "limit"),
        (lambda: RateLimit(limit=5, window_s=HALF), "window_s"),
        (lambda: SlidingWindowLimiter(RateLimit(1, 1)).admit("", T0), "key"),
        (lambda: SlidingWindowLimiter(RateLimit(1, 1)).admit("k", HALF), "now"),
        (lambda: SlidingWindowLimiter(RateLimit(1, 1)).admit("k" * 513, T0), "key"),
    ],
)
def test_invalid_inputs_are_refused_naming_the_field(call: Any, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        call()
    assert caught.value.field == field
