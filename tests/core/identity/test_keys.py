"""Identities: keys from seeds, node ids, signatures, and no key material in reprs."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.keys import (
    Identity,
    node_id_from_public_key,
    node_id_matches,
    parse_node_id,
    parse_public_key,
    parse_signature,
    verify_signature,
)

seeds = st.binary(min_size=32, max_size=32)


def test_the_same_seed_always_gives_the_same_key_and_node_id() -> None:
    a = Identity.from_seed(b"\x07" * 32)
    b = Identity.from_seed(b"\x07" * 32)
    assert a == b
    assert hash(a) == hash(b)
    assert a.public_key_hex == b.public_key_hex
    assert a.node_id == b.node_id


def test_the_public_key_matches_the_rfc8032_test_vector() -> None:
    # RFC 8032 §7.1, TEST 1.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    identity = Identity.from_seed(seed)
    assert (
        identity.public_key_hex
        == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert identity.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


def test_the_node_id_is_n_plus_twenty_bytes_of_the_domain_separated_key_hash() -> None:
    identity = Identity.from_seed(b"\x01" * 32)
    key = bytes.fromhex(identity.public_key_hex)
    expected = "n" + hashlib.sha256(b"owm/node-id/v1" + key).hexdigest()[:40]
    assert identity.node_id == expected
    assert node_id_from_public_key(identity.public_key_hex) == expected
    assert parse_node_id(expected) == expected
    assert node_id_matches(expected, identity.public_key_hex)
    assert not node_id_matches(expected, Identity.from_seed(b"\x02" * 32).public_key_hex)


@given(seed=seeds)
@settings(max_examples=50)
def test_public_keys_are_64_lower_case_hex_and_node_ids_parse(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    assert parse_public_key(identity.public_key_hex) == identity.public_key_hex
    assert identity.public_key_hex == identity.public_key_hex.lower()
    assert len(identity.public_key_hex) == 64
    assert parse_node_id(identity.node_id) == identity.node_id


@given(seed=seeds, message=st.binary(max_size=256))
@settings(max_examples=50)
def test_a_signature_verifies_for_its_message_and_key(seed: bytes, message: bytes) -> None:
    identity = Identity.from_seed(seed)
    signature = identity.sign(message)
    assert len(signature) == 64
    identity.verify(message, signature)
    verify_signature(identity.public_key_hex, message, signature)


@given(seed=seeds, message=st.binary(min_size=1, max_size=64), data=st.data())
@settings(max_examples=50)
def test_flipping_any_bit_of_message_or_signature_fails_verification(
    seed: bytes, message: bytes, data: st.DataObject
) -> None:
    identity = Identity.from_seed(seed)
    signature = identity.sign(message)
    bit = data.draw(st.integers(0, len(message) * 8 - 1))
    tampered = bytearray(message)
    tampered[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(SignatureInvalid):
        identity.verify(bytes(tampered), signature)
    sig_bit = data.draw(st.integers(0, 64 * 8 - 1))
    bad_sig = bytearray(signature)
    bad_sig[sig_bit // 8] ^= 1 << (sig_bit % 8)
    with pytest.raises(SignatureInvalid):
        identity.verify(message, bytes(bad_sig))


def test_a_signature_from_another_key_is_rejected() -> None:
    alice = Identity.from_seed(b"\x0a" * 32)
    mallory = Identity.from_seed(b"\x0b" * 32)
    with pytest.raises(SignatureInvalid):
        verify_signature(alice.public_key_hex, b"hello", mallory.sign(b"hello"))


@pytest.mark.parametrize("signature", [b"", b"\x00" * 63, b"\x00" * 65])
def test_a_signature_of_the_wrong_length_is_invalid_not_a_crash(signature: bytes) -> None:
    identity = Identity.from_seed(b"\x0c" * 32)
    with pytest.raises(SignatureInvalid):
        identity.verify(b"hello", signature)


@given(seed=seeds)
@settings(max_examples=30)
def test_repr_and_str_never_show_the_seed_or_secret_key(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    secret = bytes(identity._signing_key)  # the seed, as PyNaCl encodes it
    shown = repr(identity) + str(identity) + f"{identity}" + repr([identity])
    for form in (seed.hex(), secret.hex(), seed.hex().upper(), repr(seed), repr(secret)):
        assert form not in shown
    assert identity.public_key_hex in shown


@pytest.mark.parametrize(
    ("seed", "reason"),
    [(b"\x00" * 31, "32 bytes"), (b"\x00" * 33, "32 bytes"), ("00" * 32, "bytes"), (None, "bytes")],
)
def test_a_seed_that_is_not_32_bytes_is_refused_naming_the_seed(seed: object, reason: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        Identity.from_seed(seed)  # type: ignore[arg-type]
    assert caught.value.field == "seed"
    assert reason in caught.value.reason


@given(text=st.text(max_size=70))
@settings(max_examples=100)
def test_parsing_rejects_anything_but_the_exact_shapes(text: str) -> None:
    import re

    checks = [
        (parse_public_key, r"[0-9a-f]{64}", "public_key"),
        (parse_node_id, r"n[0-9a-f]{40}", "node_id"),
        (parse_signature, r"[0-9a-f]{128}", "signature"),
    ]
    for parse, pattern, field in checks:
        if re.fullmatch(pattern, text):
            assert parse(text) == text
        else:
            with pytest.raises(InvalidValue) as caught:
                parse(text)
            assert caught.value.field == field


@pytest.mark.parametrize(
    "value",
    [
        "N" + "a" * 40,
        "n" + "A" * 40,
        "n" + "a" * 39,
        "n" + "a" * 41,
        "x" + "a" * 40,
        42,
        None,
    ],
)
def test_malformed_node_ids_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidValue) as caught:
        parse_node_id(value, "reporter_node")
    assert caught.value.field == "reporter_node"


def test_node_id_derivation_refuses_a_malformed_public_key() -> None:
    with pytest.raises(InvalidValue) as caught:
        node_id_from_public_key("AB" * 32)
    assert caught.value.field == "public_key"
