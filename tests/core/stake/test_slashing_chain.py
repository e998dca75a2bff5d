"""The slashing log's continuation rule: what a store accepts as the next entry (SRS-STAKE-06)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from owm_core.errors import Conflict
from owm_core.identity.keys import Identity
from owm_core.stake.slashing import (
    GENESIS_HASH,
    SlashingLogEntry,
    check_next_entry,
)
from tests.core.stake.test_slashing import signed_log

T0 = 1_700_000_000
COORDINATOR = Identity.from_seed(b"\x61" * 32)


LOG = signed_log(8, COORDINATOR)
lengths = st.integers(0, len(LOG) - 1)
hashes = st.one_of(
    st.sampled_from([GENESIS_HASH, *(e.entry_hash() for e in LOG)]),
    st.binary(min_size=32, max_size=32).map(bytes.hex),
)


def _head(n: int) -> SlashingLogEntry | None:
    return LOG[n - 1] if n else None


@given(n=lengths)
def test_the_entry_the_coordinator_appends_next_continues_the_log(n: int) -> None:
    check_next_entry(_head(n), LOG[n])


@given(n=lengths, index=st.integers(0, 10**6))
def test_an_entry_with_any_other_index_is_refused(n: int, index: int) -> None:
    assume(index != n)
    with pytest.raises(Conflict, match="index"):
        check_next_entry(_head(n), attrs.evolve(LOG[n], index=index))


@given(n=lengths, prev_hash=hashes)
def test_an_entry_that_does_not_name_the_head_as_its_prev_hash_is_refused(
    n: int, prev_hash: str
) -> None:
    assume(prev_hash != LOG[n].prev_hash)
    with pytest.raises(Conflict, match="prev_hash"):
        check_next_entry(_head(n), attrs.evolve(LOG[n], prev_hash=prev_hash))


@given(n=st.integers(1, len(LOG) - 1), earlier=st.integers(1, 10**6))
def test_an_entry_dated_before_the_head_is_refused(n: int, earlier: int) -> None:
    head = LOG[n - 1]
    assume(head.at - earlier >= 0)
    with pytest.raises(Conflict, match="dated before"):
        check_next_entry(head, attrs.evolve(LOG[n], at=head.at - earlier))


@given(n=lengths, other=lengths)
def test_an_entry_of_another_position_never_continues_the_log(n: int, other: int) -> None:
    assume(other != n)
    with pytest.raises(Conflict):
        check_next_entry(_head(n), LOG[other])
