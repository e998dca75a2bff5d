"""TLS keys bound to identities: only the vouching identity verifies, any change breaks it."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.keys import Identity
from owm_core.identity.tls_binding import (
    BINDING_BYTES,
    TlsBinding,
    bind_tls_key,
    binding_statement,
    certificate_fingerprint,
    fingerprint_matches,
    verify_tls_binding,
)

seeds = st.binary(min_size=32, max_size=32)
spkis = st.binary(min_size=1, max_size=200)


@given(seed=seeds, spki=spkis)
@settings(max_examples=50)
def test_a_binding_verifies_against_the_identity_that_made_it(seed: bytes, spki: bytes) -> None:
    node = Identity.from_seed(seed)
    binding = bind_tls_key(node, spki)
    verify_tls_binding(binding, node.public_key_hex, spki)
    assert TlsBinding.from_bytes(binding.to_bytes()) == binding
    assert len(binding.to_bytes()) == BINDING_BYTES


@given(seed=seeds, other=seeds, spki=spkis)
@settings(max_examples=50)
def test_a_binding_by_another_identity_is_refused(seed: bytes, other: bytes, spki: bytes) -> None:
    node, impostor = Identity.from_seed(seed), Identity.from_seed(other)
    if node == impostor:
        return
    with pytest.raises(SignatureInvalid):
        verify_tls_binding(bind_tls_key(impostor, spki), node.public_key_hex, spki)
    forged = TlsBinding(
        node.public_key_hex, impostor.sign(binding_statement(node.public_key_hex, spki))
    )
    with pytest.raises(SignatureInvalid):
        verify_tls_binding(forged, node.public_key_hex, spki)


@given(seed=seeds, spki=spkis, data=st.data())
@settings(max_examples=50)
def test_a_binding_does_not_vouch_for_any_other_tls_key(
    seed: bytes, spki: bytes, data: st.DataObject
) -> None:
    node = Identity.from_seed(seed)
    binding = bind_tls_key(node, spki)
    bit = data.draw(st.integers(0, 8 * len(spki) - 1))
    other = bytearray(spki)
    other[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureInvalid):
        verify_tls_binding(binding, node.public_key_hex, bytes(other))


def test_malformed_bindings_and_keys_are_refused() -> None:
    with pytest.raises(InvalidValue):
        TlsBinding.from_bytes(b"\x00" * 95)
    with pytest.raises(InvalidValue):
        binding_statement("00" * 32, b"")


def test_a_fingerprint_is_the_sha256_of_the_der_and_pins_match_in_any_case() -> None:
    der = b"certificate"
    pin = hashlib.sha256(der).hexdigest()
    assert certificate_fingerprint(der) == pin
    assert fingerprint_matches(der, pin.upper())
    assert fingerprint_matches(der, ":".join(pin[i : i + 2] for i in range(0, 64, 2)))
    assert not fingerprint_matches(b"another", pin)
    assert not fingerprint_matches(der, "é" * 64)
