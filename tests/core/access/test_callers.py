"""API access rules: who is rate limited (SRS-API-02/03, SRS 4.8.1) and signed requests."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.access.api_keys import Plan
from owm_core.access.callers import (
    Caller,
    CallerKind,
    SignedRequestGuard,
    parse_signed_request,
    rate_limit_key,
    signed_request_message,
    verify_signed_request,
)
from owm_core.errors import InvalidValue, ReplayRejected, SignatureInvalid
from owm_core.identity.keys import Identity

NODE = Identity.from_seed(b"\x05" * 32)
MAINNET = Identity.from_seed(b"\x06" * 32).public_key_hex
TESTNET = Identity.from_seed(b"\x07" * 32).public_key_hex
T0 = 1_800_000_000


def test_only_free_keys_and_nodes_outside_node_management_are_limited() -> None:
    free = Caller(CallerKind.API_KEY, "key_1", "acme", Plan.FREE)
    paid = Caller(CallerKind.API_KEY, "key_2", "acme", Plan.COMMERCIAL)
    token = Caller(CallerKind.L402, "ab" * 32, "l402:abab", Plan.COMMERCIAL)
    node = Caller(CallerKind.NODE, NODE.node_id, NODE.node_id, Plan.FREE)
    assert rate_limit_key(free, node_management=False) == "key:key_1"
    assert rate_limit_key(free, node_management=True) == "key:key_1"
    assert rate_limit_key(paid, node_management=False) is None
    assert rate_limit_key(token, node_management=False) is None
    assert rate_limit_key(node, node_management=True) is None
    assert rate_limit_key(node, node_management=False) == f"node:{NODE.node_id}"


def _signed(method: str, path: str, body: bytes, nonce: str = "ab" * 8, at: int = T0):  # type: ignore[no-untyped-def]
    signature = NODE.sign(signed_request_message(MAINNET, method, path, at, nonce, body)).hex()
    return parse_signed_request(NODE.public_key_hex, str(at), nonce, signature)


@settings(max_examples=50)
@given(
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=st.from_regex(r"/v1/[a-z/]{0,30}(\?[a-z=0-9&]{0,20})?", fullmatch=True),
    body=st.binary(max_size=64),
    other=st.sampled_from(["coordinator", "method", "path", "body"]),
)
def test_a_signature_covers_the_coordinator_method_path_query_and_body(
    method: str, path: str, body: bytes, other: str
) -> None:
    request = _signed(method, path, body)
    verify_signed_request(request, MAINNET, method, path, body)
    changed = {
        "coordinator": (TESTNET, method, path, body),
        "method": (MAINNET, "PUT", path, body),
        "path": (MAINNET, method, path + "x", body),
        "body": (MAINNET, method, path, body + b"!"),
    }[other]
    with pytest.raises(SignatureInvalid):
        verify_signed_request(request, *changed)


def test_malformed_headers_are_named() -> None:
    with pytest.raises(InvalidValue) as key:
        parse_signed_request("zz", str(T0), "ab" * 8, "00" * 64)
    assert key.value.field == "X-OWM-Node-Key"
    with pytest.raises(InvalidValue) as stamp:
        parse_signed_request(NODE.public_key_hex, "soon", "ab" * 8, "00" * 64)
    assert stamp.value.field == "X-OWM-Timestamp"
    with pytest.raises(InvalidValue) as nonce:
        parse_signed_request(NODE.public_key_hex, str(T0), "xyz", "00" * 64)
    assert nonce.value.field == "X-OWM-Nonce"


def test_the_guard_refuses_replays_stale_and_future_requests() -> None:
    guard = SignedRequestGuard(window_s=300)
    guard.accept(_signed("GET", "/v1/x", b""), T0)
    with pytest.raises(ReplayRejected):
        guard.accept(_signed("GET", "/v1/x", b""), T0 + 1)
    guard.accept(_signed("GET", "/v1/x", b"", nonce="cd" * 8), T0 + 1)
    with pytest.raises(ReplayRejected):
        guard.accept(_signed("GET", "/v1/x", b"", nonce="ef" * 8, at=T0 - 400), T0 + 1)
    with pytest.raises(ReplayRejected):
        guard.accept(_signed("GET", "/v1/x", b"", nonce="ef" * 8, at=T0 + 400), T0 + 1)


@settings(max_examples=30)
@given(gaps=st.lists(st.integers(0, 400), min_size=1, max_size=30))
def test_a_nonce_is_never_accepted_twice_while_its_timestamp_is_fresh(gaps: list[int]) -> None:
    guard = SignedRequestGuard(window_s=300)
    request = _signed("GET", "/v1/x", b"")
    now = T0
    guard.accept(request, now)
    for gap in gaps:
        now += gap
        with pytest.raises(ReplayRejected):
            guard.accept(request, now)
