"""Opening a submitter's signed ``output_request`` (SRS-SEC-02/03): only a valid signature
over a well-formed task id names a reader; any other envelope is refused before any lookup."""

from __future__ import annotations

import pytest

from owm_core.coordination.submissions import open_output_request
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.envelopes import (
    BalanceRequest,
    EnvelopeKind,
    OutputRequest,
    seal,
    to_bytes,
)
from owm_core.identity.keys import Identity

SUBMITTER = Identity.from_seed(b"\x71" * 32)
AUDIENCE = Identity.from_seed(b"\x0c" * 32).public_key_hex
NONCE = b"\x01" * 16


def test_a_signed_output_request_names_its_signer_and_task() -> None:
    raw = to_bytes(seal(SUBMITTER, EnvelopeKind.OUTPUT_REQUEST, OutputRequest("t-1"), NONCE, 5,
                        audience=AUDIENCE))
    envelope, body = open_output_request(raw, audience=AUDIENCE)
    assert (envelope.signer, body.task_id) == (SUBMITTER.public_key_hex, "t-1")


def test_a_missing_request_is_unauthenticated() -> None:
    with pytest.raises(SignatureInvalid, match="request_envelope is missing"):
        open_output_request(b"", audience=AUDIENCE)


def test_a_changed_body_no_longer_verifies() -> None:
    raw = to_bytes(seal(SUBMITTER, EnvelopeKind.OUTPUT_REQUEST, OutputRequest("t-1"), NONCE, 5,
                        audience=AUDIENCE))
    with pytest.raises(SignatureInvalid):
        open_output_request(raw.replace(b"t-1", b"t-2"), audience=AUDIENCE)


def test_a_balance_request_is_not_an_output_request() -> None:
    raw = to_bytes(seal(SUBMITTER, EnvelopeKind.BALANCE_REQUEST, BalanceRequest(0), NONCE, 5,
                        audience=AUDIENCE))
    with pytest.raises(InvalidValue, match="must be a output_request envelope"):
        open_output_request(raw, audience=AUDIENCE)


@pytest.mark.parametrize("task_id", ["", "../x", "a" * 200, "sp ace"])
def test_a_malformed_task_id_is_refused_naming_the_field(task_id: str) -> None:
    with pytest.raises(InvalidValue, match="task_id"):
        OutputRequest(task_id)
