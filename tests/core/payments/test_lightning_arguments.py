"""The argument checks every Lightning adapter applies before calling its node."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.payments.lightning import (
    require_channel_point,
    require_int,
    require_payment_hash,
    require_peer_pubkey,
)


@given(st.integers(), st.sampled_from([0, 1]))
def test_an_integer_argument_is_accepted_exactly_when_it_reaches_its_minimum(
    value: int, minimum: int
) -> None:
    if value >= minimum:
        require_int("amount_msat", value, minimum=minimum)
    else:
        with pytest.raises(InvalidValue, match="amount_msat"):
            require_int("amount_msat", value, minimum=minimum)


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_an_integer_argument_must_be_an_int_and_not_a_bool(value: object) -> None:
    with pytest.raises(InvalidValue, match="must be a positive integer"):
        require_int("expiry_s", value, minimum=1)


@given(st.binary(min_size=32, max_size=32))
def test_a_payment_hash_in_lower_case_hex_gives_back_its_bytes(digest: bytes) -> None:
    assert require_payment_hash(digest.hex()) == digest


@pytest.mark.parametrize("text", ["", "AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32])
def test_a_payment_hash_that_is_not_64_lower_case_hex_characters_is_refused(text: str) -> None:
    with pytest.raises(InvalidValue, match="payment_hash"):
        require_payment_hash(text)


def test_a_peer_pubkey_must_be_a_compressed_key_and_a_channel_point_txid_colon_index() -> None:
    require_peer_pubkey("02" + "ab" * 32)
    require_channel_point("ab" * 32 + ":1")
    with pytest.raises(InvalidValue, match="peer_pubkey"):
        require_peer_pubkey("04" + "ab" * 32)
    with pytest.raises(InvalidValue, match="channel_point"):
        require_channel_point("ab" * 32)
