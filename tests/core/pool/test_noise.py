"""Stratum V2's Noise NX handshake: both sides agree, the pool is authenticated by its
certificate, and any tampering or a wrong authority ends the handshake (SRS-SEC-16)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import NoiseFailure
from owm_core.pool import noise, secp256k1

AUTHORITY = b"\x07" * 32
STATIC = b"\x05" * 32
NOW = 1_800_000_000


def static_key(valid_from: int = NOW - 10, not_valid_after: int = NOW + 3600) -> noise.StaticKey:
    ellswift = secp256k1.ellswift_create(STATIC, b"\x03" * 32)
    cert = noise.sign_certificate(AUTHORITY, ellswift, valid_from, not_valid_after, b"\x04" * 32)
    return noise.StaticKey(STATIC, ellswift, cert)


def handshake(
    key: noise.StaticKey | None = None,
    *,
    now: int = NOW,
    authority: bytes | None = None,
    tamper: int | None = None,
) -> tuple[noise.Transport, noise.Transport]:
    miner = noise.Initiator(b"\x09" * 32, b"\x0a" * 32)
    act2, pool = noise.respond(miner.act1(), key or static_key(), b"\x0b" * 32, b"\x0c" * 32)
    if tamper is not None:
        act2 = act2[:tamper] + bytes([act2[tamper] ^ 1]) + act2[tamper + 1 :]
    authority_xonly = authority or secp256k1.xonly_public_key(AUTHORITY)
    transport, _static = miner.finish(act2, authority_xonly, now)
    return transport, pool


def test_after_the_handshake_each_side_decrypts_what_the_other_encrypts() -> None:
    miner, pool = handshake()
    assert miner.handshake_hash == pool.handshake_hash
    assert pool.receive.decrypt_with_ad(b"", miner.send.encrypt_with_ad(b"", b"ciao")) == b"ciao"
    assert miner.receive.decrypt_with_ad(b"", pool.send.encrypt_with_ad(b"", b"hola")) == b"hola"


def test_act_two_has_the_ellswift_sized_length() -> None:
    miner = noise.Initiator(b"\x09" * 32, b"\x0a" * 32)
    act1 = miner.act1()
    act2, _ = noise.respond(act1, static_key(), b"\x0b" * 32, b"\x0c" * 32)
    assert (len(act1), len(act2)) == (64, noise.ACT2_BYTES) == (64, 234)


@settings(max_examples=40, deadline=None)
@given(position=st.integers(64, noise.ACT2_BYTES - 1))
def test_flipping_any_encrypted_byte_of_act_two_ends_the_handshake(position: int) -> None:
    with pytest.raises(NoiseFailure):
        handshake(tamper=position)


def test_a_pool_certified_by_another_authority_is_refused() -> None:
    with pytest.raises(NoiseFailure, match="expected authority"):
        handshake(authority=secp256k1.xonly_public_key(b"\x08" * 32))


@pytest.mark.parametrize("now", [NOW - 11, NOW + 3601])
def test_a_certificate_outside_its_validity_period_is_refused(now: int) -> None:
    with pytest.raises(NoiseFailure, match="not valid at this time"):
        handshake(now=now)


def test_a_replaced_static_key_does_not_match_its_certificate() -> None:
    key = static_key()
    other = secp256k1.ellswift_create(b"\x06" * 32, b"\x03" * 32)
    with pytest.raises(NoiseFailure, match="expected authority"):
        handshake(noise.StaticKey(b"\x06" * 32, other, key.certificate))


def test_a_short_act_is_refused_at_either_end() -> None:
    with pytest.raises(NoiseFailure):
        noise.respond(b"\x00" * 63, static_key(), b"\x0b" * 32, b"\x0c" * 32)
    with pytest.raises(NoiseFailure):
        noise.Initiator(b"\x09" * 32, b"\x0a" * 32).finish(b"\x00" * 233, AUTHORITY, NOW)


def test_a_failed_decryption_leaves_the_nonce_so_the_next_genuine_message_still_decrypts() -> None:
    miner, pool = handshake()
    good = miner.send.encrypt_with_ad(b"", b"share")
    with pytest.raises(NoiseFailure):
        pool.receive.decrypt_with_ad(b"", good[:-1] + bytes([good[-1] ^ 1]))
    assert pool.receive.decrypt_with_ad(b"", good) == b"share"


def test_the_specifications_authority_key_vector_encodes_and_decodes() -> None:
    raw = bytes(
        [
            118,
            99,
            112,
            0,
            151,
            156,
            28,
            17,
            175,
            12,
            48,
            11,
            205,
            140,
            127,
            228,
            134,
            16,
            252,
            233,
            185,
            193,
            30,
            61,
            174,
            227,
            90,
            224,
            176,
            138,
            116,
            85,
        ]
    )
    text = "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
    assert noise.encode_authority_key(raw) == text
    assert noise.decode_authority_key(text) == raw


@pytest.mark.parametrize(
    "text", ["9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXi", "0OIl", ""]
)
def test_a_mistyped_authority_key_is_refused(text: str) -> None:
    with pytest.raises(NoiseFailure):
        noise.decode_authority_key(text)


def test_hkdf_matches_rfc5869_with_an_empty_info() -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    ck, ikm = b"\x01" * 32, b"\x02" * 32
    expected = HKDF(hashes.SHA256(), 64, salt=ck, info=b"").derive(ikm)
    first, second = noise.hkdf2(ck, ikm)
    assert first + second == expected


def test_the_specifications_pool_url_example_parses() -> None:
    url = noise.PoolUrl.parse(
        "stratum2+tcp://thepool.com:34254/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
    )
    assert (url.host, url.port) == ("thepool.com", 34254)
    assert url.authority_xonly == noise.decode_authority_key(
        "9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"
    )


@pytest.mark.parametrize(
    "url",
    ["stratum+tcp://pool:3333/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh", "stratum2+tcp://pool/x",
     "stratum2+tcp://pool:3333", "stratum2+tcp://pool:99999/9bXiEd8boQVhq7WddEcERUL5tyyJVFYdU8th3HfbNXK3Yw6GRXh"],
)  # fmt: skip
def test_a_pool_url_without_scheme_port_or_authority_key_is_refused(url: str) -> None:
    with pytest.raises(NoiseFailure):
        noise.PoolUrl.parse(url)
