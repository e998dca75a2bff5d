"""L402 tokens: interoperable macaroons, header round trips and verification rules (SRS-LN-07)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.access import l402
from owm_core.errors import L402Invalid

SERVICE = "owm-api"
NOW = 1_800_000_000
DAY = 86_400

secrets32 = st.binary(min_size=32, max_size=32)


def _token(root_key: bytes, preimage: bytes, token_id: bytes, valid_until: int) -> l402.Macaroon:
    return l402.mint_token(
        root_key,
        hashlib.sha256(preimage).digest(),
        token_id,
        service=SERVICE,
        valid_until=valid_until,
    )


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def test_macaroons_match_the_libmacaroons_v2_test_vectors_byte_for_byte() -> None:
    root = l402.mint(b"this is the key", b"keyid", location="http://example.org/")
    assert _urlsafe(root.serialize()) == (
        "AgETaHR0cDovL2V4YW1wbGUub3JnLwIFa2V5aWQAAAYgfN7nklEcW8b1KEhYBd_psk54XijiqZMB-dcRxgnjjvc"
    )
    caveated = root.add_first_party_caveat("account = 3735928559")
    assert _urlsafe(caveated.serialize()) == (
        "AgETaHR0cDovL2V4YW1wbGUub3JnLwIFa2V5aWQAAhRhY2NvdW50ID0gMzczNTkyODU1OQAABiD1SAf23G7fiL8"
        "PcwazgiVio2JTPb9zObphdl2kvSWdhw"
    )
    assert l402.Macaroon.parse(caveated.serialize()) == caveated
    assert l402.verify_signature(caveated, b"this is the key")
    assert not l402.verify_signature(caveated, b"this is not the key")


def test_the_hmac_chain_matches_the_libmacaroons_readme_signatures() -> None:
    key = b"this is our super secret key; only we should know it"
    macaroon = l402.mint(key, b"we used our secret key", location="http://mybank/")
    assert macaroon.signature.hex() == (
        "e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f"
    )
    assert macaroon.add_first_party_caveat("test = caveat").signature.hex() == (
        "197bac7a044af33332865b9266e26d493bdd668a660e44d88ce1a998c23dbd67"
    )


def test_an_l402_identifier_is_version_payment_hash_and_token_id() -> None:
    payment_hash, token_id = bytes(range(32)), bytes(range(32, 64))
    identifier = l402.TokenIdentifier(payment_hash=payment_hash, token_id=token_id).encode()
    assert identifier == b"\x00\x00" + payment_hash + token_id
    assert l402.TokenIdentifier.decode(identifier).payment_hash == payment_hash
    with pytest.raises(L402Invalid, match="version 1"):
        l402.TokenIdentifier.decode(b"\x00\x01" + payment_hash + token_id)


@settings(max_examples=40)
@given(
    root_key=secrets32, preimage=secrets32, token_id=secrets32, lifetime=st.integers(1, 10 * DAY)
)
def test_a_paid_token_round_trips_through_the_headers_and_verifies(
    root_key: bytes, preimage: bytes, token_id: bytes, lifetime: int
) -> None:
    macaroon = _token(root_key, preimage, token_id, NOW + lifetime)
    challenge = l402.parse_challenge(
        l402.format_challenge(l402.Challenge(macaroon=macaroon, invoice="lnbcrt10n1pxyz"))
    )
    assert challenge.macaroon == macaroon and challenge.invoice == "lnbcrt10n1pxyz"
    header = l402.format_authorization(l402.Credential(macaroon=macaroon, preimage=preimage))
    credential = l402.parse_authorization(header)
    token = l402.verify(credential, root_key, service=SERVICE, now=NOW)
    assert token.token_id == token_id
    assert token.payment_hash == hashlib.sha256(preimage).digest()


@settings(max_examples=40)
@given(root_key=secrets32, preimage=secrets32, other=secrets32, token_id=secrets32)
def test_a_wrong_preimage_is_rejected(
    root_key: bytes, preimage: bytes, other: bytes, token_id: bytes
) -> None:
    macaroon = _token(root_key, preimage, token_id, NOW + DAY)
    credential = l402.Credential(macaroon=macaroon, preimage=other)
    if other == preimage:
        assert l402.verify(credential, root_key, service=SERVICE, now=NOW)
    else:
        with pytest.raises(L402Invalid, match="preimage"):
            l402.verify(credential, root_key, service=SERVICE, now=NOW)


@settings(max_examples=40)
@given(
    root_key=secrets32,
    preimage=secrets32,
    token_id=secrets32,
    extension=st.integers(1, 10**6),
    index=st.integers(0, 1),
)
def test_a_tampered_caveat_is_rejected(
    root_key: bytes, preimage: bytes, token_id: bytes, extension: int, index: int
) -> None:
    """Rewriting a caveat (say, pushing the expiry back) breaks the HMAC chain."""
    macaroon = _token(root_key, preimage, token_id, NOW + DAY)
    forged_conditions = [f"services={SERVICE}:0", f"{SERVICE}_valid_until={NOW + DAY + extension}"]
    caveats = list(macaroon.caveats)
    caveats[index] = l402.Caveat(identifier=forged_conditions[index].encode())
    if caveats[index] == macaroon.caveats[index]:
        caveats[1] = l402.Caveat(identifier=forged_conditions[1].encode())
    forged = l402.Macaroon(
        identifier=macaroon.identifier,
        signature=macaroon.signature,
        location=macaroon.location,
        caveats=tuple(caveats),
    )
    credential = l402.parse_authorization(
        l402.format_authorization(l402.Credential(macaroon=forged, preimage=preimage))
    )
    with pytest.raises(L402Invalid, match="signature"):
        l402.verify(credential, root_key, service=SERVICE, now=NOW)


@settings(max_examples=40)
@given(
    root_key=secrets32,
    preimage=secrets32,
    token_id=secrets32,
    valid_until=st.integers(0, NOW),
    late_by=st.integers(0, DAY),
)
def test_an_expired_token_is_rejected(
    root_key: bytes, preimage: bytes, token_id: bytes, valid_until: int, late_by: int
) -> None:
    macaroon = _token(root_key, preimage, token_id, valid_until)
    credential = l402.Credential(macaroon=macaroon, preimage=preimage)
    with pytest.raises(L402Invalid, match="expired"):
        l402.verify(credential, root_key, service=SERVICE, now=valid_until + late_by)


def test_a_token_is_good_for_exactly_24_hours_of_access() -> None:
    preimage, root_key = b"\x01" * 32, b"\x02" * 32
    macaroon = _token(root_key, preimage, b"\x03" * 32, NOW + DAY)
    credential = l402.Credential(macaroon=macaroon, preimage=preimage)
    l402.verify(credential, root_key, service=SERVICE, now=NOW + DAY - 1)
    with pytest.raises(L402Invalid, match="expired"):
        l402.verify(credential, root_key, service=SERVICE, now=NOW + DAY)


def test_a_holder_can_attenuate_but_not_widen_a_token() -> None:
    preimage, root_key = b"\x01" * 32, b"\x02" * 32
    macaroon = _token(root_key, preimage, b"\x03" * 32, NOW + DAY)
    shorter = macaroon.add_first_party_caveat(f"{SERVICE}_valid_until={NOW + 60}")
    credential = l402.Credential(macaroon=shorter, preimage=preimage)
    l402.verify(credential, root_key, service=SERVICE, now=NOW)
    with pytest.raises(L402Invalid, match="expired"):
        l402.verify(credential, root_key, service=SERVICE, now=NOW + 60)
    limited = macaroon.add_first_party_caveat(f"{SERVICE}_capabilities=query")
    limited_credential = l402.Credential(macaroon=limited, preimage=preimage)
    l402.verify(limited_credential, root_key, service=SERVICE, now=NOW, capability="query")
    with pytest.raises(L402Invalid, match="capability"):
        l402.verify(limited_credential, root_key, service=SERVICE, now=NOW, capability="train")


def test_a_token_for_another_service_or_with_unknown_caveats_is_rejected() -> None:
    preimage, root_key = b"\x01" * 32, b"\x02" * 32
    macaroon = _token(root_key, preimage, b"\x03" * 32, NOW + DAY)
    credential = l402.Credential(macaroon=macaroon, preimage=preimage)
    with pytest.raises(L402Invalid, match="service"):
        l402.verify(credential, root_key, service="other-api", now=NOW)
    odd = l402.Credential(macaroon=macaroon.add_first_party_caveat("ip=1.2.3.4"), preimage=preimage)
    with pytest.raises(L402Invalid, match="unknown caveat"):
        l402.verify(odd, root_key, service=SERVICE, now=NOW)


def test_a_token_signed_with_another_root_key_is_rejected() -> None:
    preimage = b"\x01" * 32
    macaroon = _token(b"\x02" * 32, preimage, b"\x03" * 32, NOW + DAY)
    with pytest.raises(L402Invalid, match="signature"):
        l402.verify(
            l402.Credential(macaroon=macaroon, preimage=preimage),
            b"\x04" * 32,
            service=SERVICE,
            now=NOW,
        )


def test_per_token_root_keys_differ_and_need_a_long_master_secret() -> None:
    master = b"m" * 32
    assert l402.derive_root_key(master, b"a" * 32) != l402.derive_root_key(master, b"b" * 32)
    with pytest.raises(L402Invalid, match="32 bytes"):
        l402.derive_root_key(b"short", b"a" * 32)


def test_lsat_and_url_safe_unpadded_headers_from_older_clients_are_accepted() -> None:
    preimage, root_key = b"\x01" * 32, b"\x02" * 32
    macaroon = _token(root_key, preimage, b"\x03" * 32, NOW + DAY)
    header = f"LSAT {_urlsafe(macaroon.serialize())}:{preimage.hex().upper()}"
    credential = l402.parse_authorization(header)
    assert credential.macaroon == macaroon and credential.preimage == preimage


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Bearer abc", "expected L402"),
        ("L402 AgE=:" + "00" * 31, "expected L402"),
        ("L402 !!!:" + "00" * 32, "expected L402"),
        ("L402 AgE=:" + "00" * 32, "truncated"),
        ("L402 AQ==:" + "00" * 32, "v2 binary"),
        ("L402 a,b:" + "00" * 32, "exactly one macaroon"),
    ],
)
def test_malformed_authorization_headers_fail_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(L402Invalid, match=reason):
        l402.parse_authorization(header)


@settings(max_examples=60)
@given(
    root_key=st.binary(min_size=1, max_size=64),
    identifier=st.binary(min_size=1, max_size=200),
    location=st.text(max_size=40),
    conditions=st.lists(st.text(min_size=1, max_size=300), max_size=6),
)
def test_any_macaroon_round_trips_through_the_v2_binary_format_and_still_verifies(
    root_key: bytes, identifier: bytes, location: str, conditions: list[str]
) -> None:
    macaroon = l402.mint(root_key, identifier, location=location, conditions=tuple(conditions))
    parsed = l402.Macaroon.parse(macaroon.serialize())
    assert parsed == macaroon
    assert parsed.conditions() == conditions
    assert l402.verify_signature(parsed, root_key)
    assert not l402.verify_signature(parsed, root_key + b"x")


@settings(max_examples=200)
@given(data=st.binary(max_size=200))
def test_parsing_arbitrary_bytes_either_succeeds_or_raises_l402_invalid(data: bytes) -> None:
    try:
        macaroon = l402.Macaroon.parse(b"\x02" + data)
    except L402Invalid:
        return
    assert l402.Macaroon.parse(macaroon.serialize()) == macaroon
