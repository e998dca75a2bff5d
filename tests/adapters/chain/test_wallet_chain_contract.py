"""The wallet-chain port (SRS-GOV-06): the embedded devnet ledger and Bitcoin Core / Knots over
JSON-RPC (``scantxoutset``, ``sendrawtransaction``, against the fake bitcoind backed by the
same ledger) find the treasury's coins and take or refuse its transactions alike."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.chain.local_ledger import LocalLedger
from owm_adapters.treasury.wallet import MultisigWallet, sign_with_key
from owm_core.errors import TransactionRejected
from owm_core.governance.treasury import plan_spend
from owm_core.ports.chain import WalletChain
from tests.fakes.bitcoind_server import FakeBitcoind
from tests.governance_keys import HOLDER_SECRETS, HOLDERS

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


@pytest.fixture(params=["embedded", "bitcoind"])
def chain(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[WalletChain, LocalLedger]]:
    ledger = LocalLedger(tmp_path / "ledger.sqlite3")
    if request.param == "embedded":
        yield ledger, ledger
        return
    with FakeBitcoind(LocalChain(tmp_path / "chain.sqlite3")) as server:
        server.wallet = ledger
        yield BitcoinRpc(server.url, user=server.user, password=server.password), ledger


def test_coins_are_found_and_a_signed_spend_is_taken_once(
    chain: tuple[WalletChain, LocalLedger],
) -> None:
    port, ledger = chain
    wallet = MultisigWallet(HOLDERS, "regtest")
    funded = ledger.fund(wallet.script_pubkey, 12_345_678)
    assert port.unspent(wallet.script_pubkey) == [funded]
    psbt = wallet.create_psbt(plan_spend([funded], 5_000_000, 2), PAYEE)
    for secret in HOLDER_SECRETS[:3]:
        psbt, _ = wallet.merge(psbt, sign_with_key(psbt, secret))
    raw, txid = wallet.finalise(psbt)
    assert port.broadcast(raw) == txid
    assert [u.txid for u in port.unspent(wallet.script_pubkey)] == [txid]
    with pytest.raises(TransactionRejected):
        port.broadcast(raw)
