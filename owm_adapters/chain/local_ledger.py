"""The embedded devnet ledger of the treasury wallet: coins and transactions in one SQLite file.

A devnet has no bitcoind; this ledger stands in for ``scantxoutset`` and ``sendrawtransaction``
behind the :class:`~owm_core.ports.chain.WalletChain` port (SRS-GOV-06). It checks what a node
would for the treasury's spends: every input exists and is unspent, the outputs do not exceed
the inputs, and each P2WSH multisig input carries its witness script (hashing to the spent
output's program) and ``m`` signatures that verify, in key order, over the BIP-143 sighash.
Other script types are refused (this is a devnet twin, not a node). :meth:`LocalLedger.fund`
is the devnet's faucet. Safe to share between threads and processes (one transaction per call).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from embit.ec import PublicKey, Signature
from embit.finalizer import parse_multisig
from embit.script import Script
from embit.transaction import Transaction

from owm_adapters.chain.local_chain import LockedFile
from owm_core.errors import TransactionRejected
from owm_core.governance.treasury import Utxo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS utxos (
    txid TEXT NOT NULL, vout INTEGER NOT NULL, script BLOB NOT NULL, amount INTEGER NOT NULL,
    spent_by TEXT, PRIMARY KEY (txid, vout));
CREATE TABLE IF NOT EXISTS transactions (txid TEXT PRIMARY KEY, raw BLOB NOT NULL);
"""
SIGHASH_ALL = 1


def _check_multisig_witness(tx: Transaction, index: int, script: bytes, amount: int) -> None:
    """Raise TransactionRejected unless input ``index`` satisfies its P2WSH multisig output."""
    items = list(tx.vin[index].witness.items)
    if len(script) != 34 or script[:2] != b"\x00\x20" or len(items) < 2:
        raise TransactionRejected(f"input {index}: only P2WSH multisig spends are supported")
    witness_script = Script(items[-1])
    if hashlib.sha256(items[-1]).digest() != script[2:]:
        raise TransactionRejected(f"input {index}: witness script does not match the output")
    try:
        m, keys = parse_multisig(witness_script)
    except RuntimeError as exc:
        raise TransactionRejected(f"input {index}: {exc}") from None
    signatures = items[1:-1]
    if items[0] != b"" or len(signatures) != m:
        raise TransactionRejected(f"input {index}: needs exactly {m} signatures")
    digest = tx.sighash_segwit(index, witness_script, amount, SIGHASH_ALL)
    remaining: list[PublicKey] = list(keys)
    for sig in signatures:
        if not sig or sig[-1] != SIGHASH_ALL:
            raise TransactionRejected(f"input {index}: signatures must be SIGHASH_ALL")
        parsed = Signature.parse(sig[:-1])
        while remaining and not remaining[0].verify(parsed, digest):
            remaining.pop(0)
        if not remaining:
            raise TransactionRejected(f"input {index}: signature does not verify")
        remaining.pop(0)


class LocalLedger(LockedFile):
    """The treasury's coins on a devnet (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path, _SCHEMA, "a ledger file")

    def __repr__(self) -> str:
        return f"LocalLedger({self._path!r})"

    def fund(self, script_pubkey: bytes, amount_sat: int, label: bytes = b"faucet") -> Utxo:
        """Create a coin of ``amount_sat`` paying ``script_pubkey`` (the devnet's faucet)."""
        with self._db() as db:
            count = db.execute("SELECT COUNT(*) FROM utxos").fetchone()[0]
            txid = hashlib.sha256(label + count.to_bytes(8, "big") + script_pubkey).hexdigest()
            db.execute(
                "INSERT INTO utxos (txid, vout, script, amount) VALUES (?, 0, ?, ?)",
                (txid, script_pubkey, amount_sat),
            )
        return Utxo(txid, 0, amount_sat)

    def unspent(self, script_pubkey: bytes) -> list[Utxo]:
        """The unspent coins paying ``script_pubkey``, oldest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT txid, vout, amount FROM utxos WHERE script = ? AND spent_by IS NULL "
                "ORDER BY rowid",
                (script_pubkey,),
            ).fetchall()
        return [Utxo(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def broadcast(self, raw_tx: bytes) -> str:
        """Check and apply a signed transaction; its txid. TransactionRejected with why not."""
        try:
            tx = Transaction.parse(raw_tx)
        except Exception as exc:  # embit raises bare exceptions on broken bytes
            raise TransactionRejected(f"not a transaction: {type(exc).__name__}") from None
        txid = tx.txid().hex()
        with self._db() as db:
            if db.execute("SELECT 1 FROM transactions WHERE txid = ?", (txid,)).fetchone():
                raise TransactionRejected("transaction already in the ledger")
            total_in = 0
            for i, vin in enumerate(tx.vin):
                row = db.execute(
                    "SELECT script, amount, spent_by FROM utxos WHERE txid = ? AND vout = ?",
                    (vin.txid.hex(), vin.vout),
                ).fetchone()
                if row is None or row[2] is not None:
                    raise TransactionRejected(f"input {i}: missing or spent coin")
                _check_multisig_witness(tx, i, bytes(row[0]), int(row[1]))
                total_in += int(row[1])
                db.execute(
                    "UPDATE utxos SET spent_by = ? WHERE txid = ? AND vout = ?",
                    (txid, vin.txid.hex(), vin.vout),
                )
            if sum(o.value for o in tx.vout) > total_in:
                raise TransactionRejected("outputs exceed inputs")
            for n, out in enumerate(tx.vout):
                db.execute(
                    "INSERT INTO utxos (txid, vout, script, amount) VALUES (?, ?, ?, ?)",
                    (txid, n, out.script_pubkey.data, out.value),
                )
            db.execute("INSERT INTO transactions (txid, raw) VALUES (?, ?)", (txid, raw_tx))
        return str(txid)
