"""The pool's coinbase and block bytes agree with python-bitcoinlib's reading of them."""

from __future__ import annotations

from bitcoin.core import CBlock, CTransaction
from bitcoin.core.script import CScript
from hypothesis import given
from hypothesis import strategies as st

from owm_core.pool import coinbase
from owm_core.pool.bitcoin import BlockHeader


@given(st.integers(0, 2**31 - 1))
def test_the_bip34_height_is_pushed_as_bitcoin_core_writes_it(height: int) -> None:
    assert coinbase.script_number(height) == bytes(CScript([height]))


def test_a_coinbase_pays_the_pool_and_a_coinbase_only_block_commits_to_it() -> None:
    script = bytes.fromhex("0014") + b"\x42" * 20
    raw = coinbase.coinbase_transaction(840_000, 312_500_000, script, b"\x00" * 7 + b"\x05")
    tx = CTransaction.deserialize(raw)
    assert (
        tx.is_coinbase()
        and tx.vout[0].nValue == 312_500_000
        and bytes(tx.vout[0].scriptPubKey) == script
    )
    assert bytes(tx.vin[0].scriptSig).startswith(bytes(CScript([840_000])))
    header = BlockHeader(
        0x20000000, b"\x11" * 32, coinbase.merkle_root(raw), 1_700_000_000, 0x207FFFFF, 7
    )
    block = CBlock.deserialize(coinbase.serialize_block(header, raw))
    assert block.calc_merkle_root() == header.merkle_root and block.vtx[0].GetTxid() == tx.GetTxid()
    # the pool's share path hands the header's 80 bytes as they are: the same block
    same = coinbase.serialize_block(header, raw)
    assert coinbase.serialize_block(header.serialize(), raw) == same


@given(
    height=st.integers(0, 2**31 - 1),
    value=st.integers(0, 21 * 10**14),
    size=st.integers(0, 32),
    data=st.data(),
)
def test_an_extended_jobs_coinbase_parts_around_any_extranonce_make_the_pools_coinbase(
    height: int, value: int, size: int, data: st.DataObject
) -> None:
    script = bytes.fromhex("0014") + b"\x42" * 20
    prefix, suffix = coinbase.coinbase_parts(height, value, script, size)
    extranonce = data.draw(st.binary(min_size=size, max_size=size))
    assert prefix + extranonce + suffix == coinbase.coinbase_transaction(
        height, value, script, extranonce
    )
