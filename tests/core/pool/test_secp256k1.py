"""The secp256k1 operations of the Noise handshake, checked against the BIPs' own test vectors
(tests/fixtures/bips: BIP324's ElligatorSwift decoding and shared secrets, BIP340's Schnorr)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from owm_core.errors import NoiseFailure
from owm_core.pool import secp256k1

BIPS = Path(__file__).resolve().parents[2] / "fixtures" / "bips"


def _rows(name: str) -> list[dict[str, str]]:
    with (BIPS / name).open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "row", _rows("bip324/ellswift_decode_test_vectors.csv"), ids=lambda r: r["comment"]
)
def test_every_bip324_ellswift_encoding_decodes_to_its_x_coordinate(row: dict[str, str]) -> None:
    assert secp256k1.ellswift_xonly(bytes.fromhex(row["ellswift"])).hex() == row["x"]


@pytest.mark.parametrize(
    "row", _rows("bip324/packet_encoding_test_vectors.csv"), ids=lambda r: r["in_idx"]
)
def test_v2_ecdh_gives_bip324s_shared_secret_for_either_role(row: dict[str, str]) -> None:
    ours = bytes.fromhex(row["in_ellswift_ours"])
    secret = bytes.fromhex(row["in_priv_ours"])
    shared = secp256k1.v2_ecdh(
        secret, ours, bytes.fromhex(row["in_ellswift_theirs"]), row["in_initiating"] == "1"
    )
    assert shared.hex() == row["mid_shared_secret"]
    assert secp256k1.ellswift_xonly(ours).hex() == row["mid_x_ours"]


@pytest.mark.parametrize("row", _rows("bip340/test-vectors.csv"), ids=lambda r: r["index"])
def test_bip340_vectors_verify_as_published_and_sign_identically(row: dict[str, str]) -> None:
    public_key, message = bytes.fromhex(row["public key"]), bytes.fromhex(row["message"])
    signature = bytes.fromhex(row["signature"])
    assert secp256k1.schnorr_verify(public_key, message, signature) is (
        row["verification result"] == "TRUE"
    )
    if row["secret key"] and len(message) == 32:
        secret = bytes.fromhex(row["secret key"])
        assert secp256k1.xonly_public_key(secret) == public_key
        assert secp256k1.schnorr_sign(secret, message, bytes.fromhex(row["aux_rand"])) == signature


def test_both_sides_of_an_ellswift_exchange_derive_the_same_secret() -> None:
    a, b = b"\x11" * 32, b"\x22" * 32
    ell_a, ell_b = (
        secp256k1.ellswift_create(a, b"\x01" * 32),
        secp256k1.ellswift_create(b, b"\x02" * 32),
    )
    assert secp256k1.v2_ecdh(a, ell_a, ell_b, True) == secp256k1.v2_ecdh(b, ell_b, ell_a, False)
    assert secp256k1.v2_ecdh(a, ell_a, ell_b, True) != secp256k1.v2_ecdh(a, ell_a, ell_b, False)


@pytest.mark.parametrize("secret", [b"\x00" * 32, b"\xff" * 32, b"\x01" * 31])
def test_an_invalid_secret_key_is_refused_without_echoing_it(secret: bytes) -> None:
    with pytest.raises(NoiseFailure) as failure:
        secp256k1.ellswift_create(secret, b"\x00" * 32)
    assert secret.hex() not in str(failure.value)
