"""The API's read-through cache (SRS-PERF-08, SRS-SEC-04): full, it drops the value used least
recently, never everything, so a flood of new keys cannot push out what is still asked for."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.services.api import ReadCache


class Ticks:
    """A clock whose monotonic milliseconds the test moves."""

    def __init__(self) -> None:
        self.ms = 0

    def now(self) -> int:
        return 1_800_000_000 + self.ms // 1_000

    def monotonic_ms(self) -> int:
        return self.ms


steps = st.lists(st.tuples(st.sampled_from(["put", "lookup"]), st.integers(0, 12)), max_size=80)


@given(steps=steps, size=st.integers(1, 6))
def test_the_cache_keeps_exactly_the_keys_used_most_recently(
    steps: list[tuple[str, int]], size: int
) -> None:
    cache = ReadCache(Ticks(), ttl_ms=60_000, max_entries=size)
    recent: list[int] = []  # the model: keys held, least recently used first
    for action, key in steps:
        if action == "put":
            cache.put(key, f"v{key}")
            recent = [k for k in recent if k != key] + [key]
            recent = recent[-size:]
        else:
            hit, value = cache.lookup(key)
            assert hit == (key in recent)
            if hit:
                assert value == f"v{key}"
                recent = [k for k in recent if k != key] + [key]
        assert len(cache) == len(recent) <= size


def test_a_value_expires_after_its_time_and_none_is_kept_with_no_time() -> None:
    clock = Ticks()
    cache = ReadCache(clock, ttl_ms=1_000)
    assert cache.get("k", lambda: 1) == 1
    clock.ms = 999
    assert cache.get("k", lambda: 2) == 1
    clock.ms = 1_000
    assert cache.get("k", lambda: 3) == 3
    off = ReadCache(clock, ttl_ms=0)
    off.put("k", 1)
    assert off.lookup("k") == (False, None) and len(off) == 0


def test_requests_missing_the_same_key_together_compute_it_once() -> None:
    """SRS-PERF-08: an expired aggregate asked for by many clients at once is read once."""
    cache = ReadCache(Ticks(), ttl_ms=60_000)
    computed: list[int] = []
    answers: list[str] = []

    def slow() -> str:
        computed.append(1)
        time.sleep(0.2)
        return "stats"

    threads = [threading.Thread(target=lambda: answers.append(cache.get("stats", slow)))
               for _ in range(8)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert answers == ["stats"] * 8 and len(computed) == 1
    assert cache.get("other", lambda: "o") == "o"  # another key is not held up


def test_a_computation_that_fails_leaves_the_key_to_the_next_request() -> None:
    cache = ReadCache(Ticks(), ttl_ms=60_000)

    def broken() -> str:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        cache.get("stats", broken)
    assert cache.get("stats", lambda: "back") == "back"
