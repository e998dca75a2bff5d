"""The portal's challenges: the coordinator recognises its own challenges for 300 s, and no
altered or foreign one (SRS-GOV-02/03)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.coordination.portal_challenges import (
    CHALLENGE_LIFE_S,
    check_challenge,
    issue_challenge,
)
from owm_core.errors import InvalidValue
from owm_core.identity.keys import Identity

COORDINATOR = Identity.from_seed(b"\x31" * 32)
OTHER = Identity.from_seed(b"\x32" * 32)


@given(random4=st.binary(min_size=4, max_size=4), at=st.integers(0, 2**40),
       age=st.integers(0, 2 * CHALLENGE_LIFE_S))  # fmt: skip
def test_a_challenge_is_answered_within_its_life_only(random4: bytes, at: int, age: int) -> None:
    challenge = issue_challenge(COORDINATOR.sign, random4, at)
    assert len(challenge) == 32
    if age <= CHALLENGE_LIFE_S:
        check_challenge(COORDINATOR.sign, challenge, at + age)
    else:
        with pytest.raises(InvalidValue, match="more than 300 s ago"):
            check_challenge(COORDINATOR.sign, challenge, at + age)


@given(random4=st.binary(min_size=4, max_size=4), flip=st.integers(0, 31))
def test_an_altered_or_foreign_challenge_is_refused(random4: bytes, flip: int) -> None:
    challenge = issue_challenge(COORDINATOR.sign, random4, 1_800_000_000)
    altered = challenge[:flip] + ("0" if challenge[flip] != "0" else "1") + challenge[flip + 1:]
    for bad in (altered, issue_challenge(OTHER.sign, random4, 1_800_000_000), "zz" * 16, ""):
        with pytest.raises(InvalidValue) as refused:
            check_challenge(COORDINATOR.sign, bad, 1_800_000_000)
        assert refused.value.field == "statement"
