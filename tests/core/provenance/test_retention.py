"""Which kept model versions a node holds on to (SRS-NODE-10, SRS-SEC-11)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.provenance.retention import kept_versions

VERSIONS = [f"v{i}" for i in range(12)]


def test_the_current_and_pinned_versions_are_kept_besides_the_newest_others() -> None:
    held = {f"v{i}": i for i in range(10)}
    assert kept_versions(held, "v0", {"v1", "gone"}, 2) == {"v0", "v1", "v9", "v8"}


def test_keeping_zero_others_keeps_only_the_current_and_pinned_ones() -> None:
    assert kept_versions({"a": 1, "b": 2, "c": 3}, "a", {"b"}, 0) == {"a", "b"}


def test_a_negative_count_is_refused_naming_it() -> None:
    with pytest.raises(InvalidValue, match="keep_versions"):
        kept_versions({"a": 1}, None, (), -1)


@given(
    installs=st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=30),
    pins=st.lists(st.sets(st.sampled_from(VERSIONS)), min_size=1, max_size=30),
    keep=st.integers(min_value=0, max_value=6),
)
def test_after_any_sequence_of_installs_and_pins_the_kept_set_is_current_pinned_and_newest(
    installs: list[str], pins: list[set[str]], keep: int
) -> None:
    held: dict[str, int] = {}
    for clock, version in enumerate(installs):  # each install is newer than the ones before
        held.setdefault(version, clock)
        pinned = pins[clock % len(pins)]
        kept = kept_versions(held, version, pinned, keep)
        others = sorted((v for v in held if v != version and v not in pinned),
                        key=lambda v: held[v], reverse=True)[:keep]
        assert kept == {version} | (pinned & held.keys()) | set(others)
        held = {v: t for v, t in held.items() if v in kept}  # pruned ones are gone
