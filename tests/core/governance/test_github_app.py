"""The GitHub App's pure rules: webhook signatures and installation tokens' lives."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.governance.github_app import (
    TOKEN_LIFE_S,
    TOKEN_MARGIN_S,
    InstallationToken,
    parse_webhook,
    signature_matches,
    webhook_signature,
)

T0 = 1_800_000_000


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=512))
def test_a_body_verifies_under_its_own_signature_only(secret: bytes, body: bytes) -> None:
    header = webhook_signature(secret, body)
    assert signature_matches(secret, body, header)
    assert not signature_matches(secret + b"x", body, header)
    assert not signature_matches(secret, body + b" ", header)
    assert not signature_matches(secret, body, header.replace("sha256=", "sha1="))


@given(flip=st.integers(0, 63))
def test_any_altered_hex_digit_of_the_signature_is_refused(flip: int) -> None:
    header = webhook_signature(b"secret", b"{}")
    digits = list(header.removeprefix("sha256="))
    digits[flip] = "0" if digits[flip] != "0" else "1"
    assert not signature_matches(b"secret", b"{}", "sha256=" + "".join(digits))


def test_no_secret_or_no_header_never_matches() -> None:
    assert not signature_matches(b"", b"{}", webhook_signature(b"", b"{}"))
    assert not signature_matches(b"secret", b"{}", None)
    assert not signature_matches(b"secret", b"{}", "")


def test_a_delivery_is_parsed_into_its_event_repository_and_installation() -> None:
    raw = json.dumps(
        {"action": "closed", "repository": {"full_name": "o/r"}, "installation": {"id": 7}}
    ).encode()
    event = parse_webhook("d-1", "pull_request", raw, T0)
    assert (event.action, event.repository, event.installation_id) == ("closed", "o/r", 7)
    assert event.body_sha256 == hashlib.sha256(raw).hexdigest()
    assert event.body()["installation"]["id"] == 7


@pytest.mark.parametrize("raw", [b"not json", b"[1]", b"\xff"])
def test_a_body_that_is_no_json_object_is_refused_naming_the_body(raw: bytes) -> None:
    with pytest.raises(InvalidValue, match="body"):
        parse_webhook("d-1", "push", raw, T0)


@given(life=st.integers(0, 10 * TOKEN_LIFE_S), age=st.integers(0, 10 * TOKEN_LIFE_S))
def test_a_token_is_never_used_past_its_hour_nor_past_githubs_expiry(life: int, age: int) -> None:
    token = InstallationToken(1, "ghs_x", T0 + life, T0)
    if token.usable_at(T0 + age):
        assert age < TOKEN_LIFE_S - TOKEN_MARGIN_S
        assert T0 + age < T0 + life - TOKEN_MARGIN_S


def test_a_tokens_repr_never_shows_the_token() -> None:
    assert "ghs_secret" not in repr(InstallationToken(1, "ghs_secret", T0 + 3600, T0))
