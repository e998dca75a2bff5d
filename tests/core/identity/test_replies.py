"""Coordinator replies are signed over (method, request, reply) (SRS-SEC-01/03): any changed
reply byte, another request or another method voids the signature — so an old reply cannot be
replayed as the answer to a new request."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import SignatureInvalid
from owm_core.identity.keys import Identity
from owm_core.identity.replies import check_reply, sign_reply

COORDINATOR = Identity.from_seed(b"c" * 32)
IMPOSTOR = Identity.from_seed(b"i" * 32)


def test_a_reply_signed_by_the_coordinator_for_this_request_is_accepted() -> None:
    signature = sign_reply(COORDINATOR, "Heartbeat", b"request", b"reply")
    check_reply(COORDINATOR.public_key_hex, "Heartbeat", b"request", b"reply", signature)


def test_an_old_reply_replayed_for_another_request_is_refused() -> None:
    old = sign_reply(COORDINATOR, "Heartbeat", b"heartbeat at t=1", b"status: online")
    with pytest.raises(SignatureInvalid, match="not signed by the pinned coordinator key"):
        check_reply(COORDINATOR.public_key_hex, "Heartbeat", b"heartbeat at t=2",
                    b"status: online", old)


def test_a_reply_signed_for_another_method_is_refused() -> None:
    signature = sign_reply(COORDINATOR, "StakeTerms", b"", b"reply")
    with pytest.raises(SignatureInvalid):
        check_reply(COORDINATOR.public_key_hex, "StakeStatus", b"", b"reply", signature)


def test_a_reply_signed_by_another_key_or_unsigned_is_refused() -> None:
    forged = sign_reply(IMPOSTOR, "Register", b"request", b"reply")
    for signature in (forged, b""):
        with pytest.raises(SignatureInvalid, match="Register reply is not signed"):
            check_reply(COORDINATOR.public_key_hex, "Register", b"request", b"reply", signature)


@given(st.binary(max_size=64), st.binary(min_size=1, max_size=64), st.data())
def test_any_changed_reply_byte_or_different_request_voids_the_signature(
    request: bytes, reply: bytes, data: st.DataObject
) -> None:
    signature = sign_reply(COORDINATOR, "GetTask", request, reply)
    index = data.draw(st.integers(0, len(reply) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = reply[:index] + bytes([reply[index] ^ flip]) + reply[index + 1:]
    with pytest.raises(SignatureInvalid):
        check_reply(COORDINATOR.public_key_hex, "GetTask", request, changed, signature)
    other = data.draw(st.binary(max_size=64).filter(lambda b: b != request))
    with pytest.raises(SignatureInvalid):
        check_reply(COORDINATOR.public_key_hex, "GetTask", other, reply, signature)
