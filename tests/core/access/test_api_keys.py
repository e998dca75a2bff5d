"""API keys: only the secret's digest is stored, and it is checked in constant time."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.access.api_keys import ApiKey, Plan, secret_sha256
from owm_core.errors import InvalidValue

T0 = 1_700_000_000


def a_key(secret: str = "s3cret", **changes: Any) -> ApiKey:
    key = ApiKey("key-1", secret_sha256(secret), "acme", Plan.FREE, T0)
    return attrs.evolve(key, **changes)


@settings(max_examples=100)
@given(secret=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1))
def test_a_key_accepts_its_own_secret_and_stores_only_its_digest(secret: str) -> None:
    key = a_key(secret)
    assert key.accepts(secret)
    assert key.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in attrs.astuple(key)  # no field holds the secret itself


@settings(max_examples=100)
@given(
    secret=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1),
    other=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1),
)
def test_a_key_refuses_any_other_secret(secret: str, other: str) -> None:
    assert a_key(secret).accepts(other) == (secret == other)


def test_a_revoked_key_accepts_nothing() -> None:
    key = a_key().revoke()
    assert key.revoked and not key.accepts("s3cret")
    assert key.revoke() == key


def test_a_non_text_secret_is_simply_not_accepted() -> None:
    assert not a_key().accepts(b"s3cret")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("key_id", ""),
        ("key_id", "key 1"),
        ("secret_sha256", "s3cret"),
        ("secret_sha256", "AB" * 32),
        ("owner", ""),
        ("plan", "commercial"),
        ("created_at", -1),
        ("revoked", 1),
    ],
)
def test_a_key_with_a_bad_field_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(InvalidValue) as caught:
        a_key(**{field: value})
    assert caught.value.field == field
