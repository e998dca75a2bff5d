"""The Lightning message-signing scheme LND and CLN share, as the embedded ledger implements it."""

from __future__ import annotations

from coincurve import PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.lightning import message_signing

# A signature made by LND's scheme, published with the ln-crypto library's README.
KNOWN_MESSAGE = "The quick brown fox jumps over the lazy dog."
KNOWN_SIGNATURE = (
    "d1q3e5fdy96zp3syrhq8zphqnaa5fqbbh9rinozegr1bjr99hssq6hbhstm3pqbh7sfu4hnsyfjjkoewum1ay85gmem"
    "98u8wxshyxs5k"
)
KNOWN_PUBKEY = "0280f375eafb209d0255a3139f1013042d55d69005a935da46bea7279d598c366a"


def test_a_signature_made_by_lnds_scheme_recovers_its_published_signer() -> None:
    assert message_signing.recover_signer(KNOWN_MESSAGE, KNOWN_SIGNATURE) == KNOWN_PUBKEY
    assert message_signing.signed_by(KNOWN_MESSAGE, KNOWN_SIGNATURE, KNOWN_PUBKEY)


@given(data=st.binary(max_size=80))
def test_zbase32_decodes_what_it_encodes(data: bytes) -> None:
    assert message_signing.zbase32_decode(message_signing.zbase32_encode(data)) == data


@given(message=st.text(max_size=200), seed=st.binary(min_size=32, max_size=32))
def test_every_signature_recovers_its_signer_and_no_other_message(
    message: str, seed: bytes
) -> None:
    try:
        key = PrivateKey(seed)
    except ValueError:
        return
    signature = message_signing.sign_message(key.secret, message)
    pubkey = key.public_key.format(compressed=True).hex()
    assert message_signing.signed_by(message, signature, pubkey)
    assert not message_signing.signed_by(message + "!", signature, pubkey)


def test_oversized_or_malformed_signatures_recover_nobody() -> None:
    assert message_signing.recover_signer("m", "y" * 5000) is None
    assert message_signing.recover_signer("m", "l" * 104) is None
    assert message_signing.recover_signer("m", "") is None
