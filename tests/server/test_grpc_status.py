"""Backend failures over gRPC: the caller gets the fixed text HTTP answers, never the backend's
message, which may name internal hosts (SRS-SEC-07); the message goes to the log."""

from __future__ import annotations

import logging

import grpc
import pytest

from owm_core.errors import DomainError
from owm_server.grpc.status import status_of
from owm_server.http.problems import from_domain
from owm_server.outages import BACKEND_OUTAGES

INTERNAL = "failed at 10.13.37.5:10009: UNAVAILABLE: Tls handshake failed"


@pytest.mark.parametrize(("kind", "detail"), BACKEND_OUTAGES)
def test_a_backend_failure_is_unavailable_with_the_fixed_text_both_shells_answer(
    kind: type[DomainError], detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    error = kind(f"backend {INTERNAL}")

    with caplog.at_level(logging.WARNING, logger="owm_server.outages"):
        code, message = status_of(error)

    assert code is grpc.StatusCode.UNAVAILABLE
    assert message == f"{error.code}: {detail}"
    assert "10.13.37.5" not in message
    assert from_domain(error).detail == detail  # the same text over HTTP
    assert INTERNAL in caplog.text  # the operator still reads what failed
