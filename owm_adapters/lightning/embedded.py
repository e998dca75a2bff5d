"""The embedded Lightning ledger: a simulated network of nodes and channels in one SQLite file.

The default Lightning backend for local networks and tests (docs/lightning-integration.md).
It is not a Lightning implementation, but everything the rest of OWM can observe is real:
invoices are BOLT11 strings signed with each simulated node's secp256k1 key (any BOLT11 decoder
accepts them), preimages are 32 random bytes with ``payment_hash = sha256(preimage)``, channels
have capacities and two balances that always sum to the capacity, payments route over open
channels (shortest path, a fixed fee per intermediate hop) and move every balance on the path in
one SQLite transaction, and a payment hash is paid at most once per payer (SRS-LN-04/06).
Keysend pays any node, keyed or not, with the preimage the payer gives; a node marked with
:meth:`SimLedger.refuse_keysend` fails it as a node without ``accept-keysend`` does.

:class:`SimLedger` owns the file and the network (nodes, channels; the back door tests and devnets
use to open channels between a treasury and node pubkeys), with :class:`SimInvoices` and
:class:`SimPayments` keeping the invoices and the payments; :class:`SimLightning` is one node's
view of it and implements :class:`owm_core.ports.lightning.Lightning`. State survives a restart:
open the same file again. Node secret keys are stored in the file: never put real funds here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import bolt11
from bolt11 import Bolt11, MilliSatoshi, TagChar, Tags
from coincurve import PrivateKey, PublicKey

from owm_adapters.files import private_file
from owm_adapters.lightning import message_signing
from owm_core.errors import (
    ChannelNotFound,
    ForceCloseNotPermitted,
    InsufficientFunds,
    InvalidValue,
    InvoiceNotFound,
)
from owm_core.payments.keysend import payment_hash_of
from owm_core.payments.lightning import Channel, Invoice, InvoiceState, PaymentResult, PaymentStatus

HOP_BASE_FEE_MSAT = 1_000
"""What each intermediate node of a simulated route charges per forwarded payment."""

HOP_FEE_PPM = 100
"""Proportional part of the hop fee, in millionths of the forwarded amount."""

CURRENCY = {"mainnet": "bc", "testnet": "tb", "signet": "tbs", "regtest": "bcrt"}
"""BOLT11 human-readable prefix of each network the ledger can pretend to be."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sim_ln_nodes (
    pubkey TEXT PRIMARY KEY,
    alias TEXT UNIQUE,
    secret_hex TEXT,
    address TEXT
);
CREATE TABLE IF NOT EXISTS sim_ln_channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel_point TEXT UNIQUE NOT NULL,
    node_a TEXT NOT NULL,
    node_b TEXT NOT NULL,
    capacity_sat INTEGER NOT NULL,
    balance_a_msat INTEGER NOT NULL,
    balance_b_msat INTEGER NOT NULL,
    confirmations INTEGER NOT NULL,
    opened_at INTEGER NOT NULL,
    closed_at INTEGER,
    closing_txid TEXT,
    forced INTEGER
);
CREATE INDEX IF NOT EXISTS sim_ln_channels_a ON sim_ln_channels (node_a, node_b);
CREATE INDEX IF NOT EXISTS sim_ln_channels_b ON sim_ln_channels (node_b, node_a);
CREATE TABLE IF NOT EXISTS sim_ln_invoices (
    payment_hash TEXT PRIMARY KEY,
    payee TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    memo TEXT NOT NULL,
    preimage TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expiry_s INTEGER NOT NULL,
    state TEXT NOT NULL,
    settled_at INTEGER,
    amount_paid_msat INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sim_ln_payments (
    payer TEXT NOT NULL,
    payment_hash TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    fee_msat INTEGER NOT NULL,
    status TEXT NOT NULL,
    preimage TEXT,
    failure_reason TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (payer, payment_hash)
);
CREATE TABLE IF NOT EXISTS sim_ln_keysend_refused (
    pubkey TEXT PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS sim_ln_onchain (
    pubkey TEXT PRIMARY KEY,
    balance_sat INTEGER NOT NULL
);
"""

LEDGER_FILE = "lightning.sqlite3"
"""The embedded ledger's file under the coordinator's data directory (and a devnet's)."""


def _now() -> int:
    return int(time.time())


def hop_fee_msat(amount_msat: int) -> int:
    """Fee an intermediate simulated node takes for forwarding ``amount_msat``."""
    return HOP_BASE_FEE_MSAT + amount_msat * HOP_FEE_PPM // 1_000_000


def _check_pubkey(pubkey: str) -> str:
    try:
        PublicKey(bytes.fromhex(pubkey))
    except ValueError:
        raise InvalidValue("peer_pubkey", "not a compressed secp256k1 public key") from None
    if len(pubkey) != 66 or pubkey != pubkey.lower():
        raise InvalidValue("peer_pubkey", "must be 66 lower-case hex characters")
    return pubkey


def _check_hash(payment_hash: str) -> str:
    if len(payment_hash) != 64 or any(c not in "0123456789abcdef" for c in payment_hash):
        raise InvalidValue("payment_hash", "must be 64 lower-case hex characters")
    return payment_hash

class _LedgerFile:
    """The ledger's SQLite file: connections, write transactions, and the clock rows are stamped
    with (tests move the clock through :attr:`SimLedger.clock`)."""

    def __init__(self, path: Path, clock: Callable[[], int]) -> None:
        self.path = path
        self.clock = clock
        with self.connect() as db:
            db.executescript(_SCHEMA)
        private_file(Path(path))  # preimages: the owner's only, whatever the umask

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """One connection, closed when the block ends (autocommit unless in a transaction)."""
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    def one(self, sql: str, params: tuple[object, ...]) -> sqlite3.Row | None:
        """The first row ``sql`` reads on a connection of its own (None: no row)."""
        with self.connect() as db:
            row: sqlite3.Row | None = db.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: tuple[object, ...]) -> list[sqlite3.Row]:
        """Every row ``sql`` reads on a connection of its own."""
        with self.connect() as db:
            return db.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE serialises writers across threads/processes."""
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


class SimLedger:
    """A simulated Lightning network persisted in one SQLite file (the embedded default).

    The ledger owns the network itself (nodes and channels); invoices and payments are kept by
    its :class:`SimInvoices` and :class:`SimPayments`, to which the per-node operations below
    delegate.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        network: str = "regtest",
        clock: Callable[[], int] = _now,
    ) -> None:
        if network not in CURRENCY:
            raise InvalidValue("network", f"must be one of {sorted(CURRENCY)}")
        self.network = network
        self._file = _LedgerFile(Path(path), clock)
        self.invoices = SimInvoices(self._file, network)
        self.payments = SimPayments(self._file, self.invoices)

    def __repr__(self) -> str:
        return f"SimLedger({str(self.path)!r}, network={self.network!r})"

    @property
    def path(self) -> Path:
        """The SQLite file holding the whole simulated network."""
        return self._file.path

    @property
    def clock(self) -> Callable[[], int]:
        """POSIX seconds stamped on channels, invoices and payments."""
        return self._file.clock

    @clock.setter
    def clock(self, clock: Callable[[], int]) -> None:
        self._file.clock = clock

    # -- the network: nodes and channels ---------------------------------------------------

    def add_node(
        self, alias: str, *, secret_key: bytes | None = None, address: str = "127.0.0.1:9735"
    ) -> str:
        """Create a simulated node that can issue invoices and pay; return its pubkey.

        Calling it again with an existing alias returns that node, so devnets can call it on
        every start.
        """
        with self._file.transaction() as db:
            row = db.execute("SELECT pubkey FROM sim_ln_nodes WHERE alias = ?", (alias,)).fetchone()
            if row is not None:
                return str(row["pubkey"])
            key = PrivateKey(secret_key) if secret_key is not None else PrivateKey()
            pubkey = key.public_key.format(compressed=True).hex()
            db.execute(
                "INSERT INTO sim_ln_nodes (pubkey, alias, secret_hex, address) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (pubkey) DO UPDATE SET alias = excluded.alias,"
                " secret_hex = excluded.secret_hex, address = excluded.address",
                (pubkey, alias, key.to_hex(), address),
            )
            return pubkey

    def lightning(self, node: str, *, force_close_allowed: bool = False) -> SimLightning:
        """The Lightning port of one simulated node, found by alias or pubkey.

        ``force_close_allowed`` stands for holding the force-close credential (SRS-SEC-13).
        """
        row = self._file.one(
            "SELECT pubkey FROM sim_ln_nodes WHERE (alias = ? OR pubkey = ?)"
            " AND secret_hex IS NOT NULL",
            (node, node),
        )
        if row is None:
            raise InvalidValue("node", f"no simulated node with a key is called {node!r}")
        return SimLightning(self, str(row["pubkey"]), force_close_allowed=force_close_allowed)

    def open_channel(
        self,
        local_pubkey: str,
        remote_pubkey: str,
        capacity_sat: int,
        *,
        push_sat: int = 0,
        confirmations: int = 6,
    ) -> Channel:
        """Open a channel funded by ``local_pubkey``, ``push_sat`` of it on the remote side.

        The remote end may be any valid pubkey (a node's configured LN identity): it is added
        as a key-less peer, which can hold channels but not issue invoices or pay.
        """
        _check_pubkey(local_pubkey)
        _check_pubkey(remote_pubkey)
        if local_pubkey == remote_pubkey:
            raise InvalidValue("remote_pubkey", "a channel needs two distinct nodes")
        if isinstance(capacity_sat, bool) or not isinstance(capacity_sat, int) or capacity_sat <= 0:
            raise InvalidValue("capacity_sat", "must be a positive integer")
        if not 0 <= push_sat <= capacity_sat:
            raise InvalidValue("push_sat", "must lie between 0 and the capacity")
        with self._file.transaction() as db:
            for pubkey in (local_pubkey, remote_pubkey):
                db.execute(
                    "INSERT INTO sim_ln_nodes (pubkey) VALUES (?) ON CONFLICT DO NOTHING",
                    (pubkey,),
                )
            count = db.execute("SELECT COUNT(*) FROM sim_ln_channels").fetchone()[0]
            txid = hashlib.sha256(
                b"owm-sim-funding" + bytes.fromhex(local_pubkey + remote_pubkey)
                + count.to_bytes(8, "big") + os.urandom(8)
            ).hexdigest()
            cursor = db.execute(
                "INSERT INTO sim_ln_channels (channel_point, node_a, node_b, capacity_sat,"
                " balance_a_msat, balance_b_msat, confirmations, opened_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f"{txid}:0", local_pubkey, remote_pubkey, capacity_sat,
                    (capacity_sat - push_sat) * 1000, push_sat * 1000, confirmations,
                    self._file.clock(),
                ),
            )
            row = db.execute(
                "SELECT * FROM sim_ln_channels WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
        return _channel(row, local_pubkey)

    def fund_onchain(self, pubkey: str, amount_sat: int) -> int:
        """Credit ``amount_sat`` to a node's simulated on-chain wallet; its new balance."""
        _check_pubkey(pubkey)
        if isinstance(amount_sat, bool) or not isinstance(amount_sat, int) or amount_sat < 0:
            raise InvalidValue("amount_sat", "must be an integer ≥ 0")
        with self._file.transaction() as db:
            db.execute(
                "INSERT INTO sim_ln_onchain (pubkey, balance_sat) VALUES (?, ?) ON CONFLICT"
                " (pubkey) DO UPDATE SET balance_sat = balance_sat + excluded.balance_sat",
                (pubkey, amount_sat),
            )
        return self.onchain_sat(pubkey)

    def onchain_sat(self, pubkey: str) -> int:
        """A node's simulated on-chain balance (0 when never funded)."""
        row = self._file.one("SELECT balance_sat FROM sim_ln_onchain WHERE pubkey = ?", (pubkey,))
        return 0 if row is None else int(row[0])

    def open_funded_channel(self, local_pubkey: str, remote_pubkey: str, amount_sat: int) -> str:
        """Open a channel from ``local_pubkey``'s on-chain funds (LND ``OpenChannel``, CLN
        ``fundchannel``); its channel point. InsufficientFunds when the funds are short."""
        _check_pubkey(remote_pubkey)
        if isinstance(amount_sat, bool) or not isinstance(amount_sat, int) or amount_sat <= 0:
            raise InvalidValue("amount_sat", "must be a positive integer")
        with self._file.transaction() as db:
            done = db.execute(
                "UPDATE sim_ln_onchain SET balance_sat = balance_sat - ?"
                " WHERE pubkey = ? AND balance_sat >= ?",
                (amount_sat, local_pubkey, amount_sat),
            )
            if done.rowcount != 1:
                short = amount_sat - self.onchain_sat(local_pubkey)
                raise InsufficientFunds(
                    f"not enough on-chain funds to open a {amount_sat} sat channel",
                    missing_msat=short * 1_000,
                )
        return self.open_channel(local_pubkey, remote_pubkey, amount_sat).channel_point

    def close_channel(self, channel_point: str, *, by: str, force: bool) -> str:
        """Close an open channel as one of its two nodes; return the (simulated) closing txid.

        A cooperative close (``force=False``) is what a node's voluntary exit looks like
        (SRS-STAKE-08); a force close is the slashing action (SRS-STAKE-05).
        """
        with self._file.transaction() as db:
            row = db.execute(
                "SELECT * FROM sim_ln_channels WHERE channel_point = ? AND closed_at IS NULL"
                " AND (node_a = ? OR node_b = ?)",
                (channel_point, by, by),
            ).fetchone()
            if row is None:
                raise ChannelNotFound(f"no open channel {channel_point} on this node")
            txid = hashlib.sha256(b"owm-sim-close" + channel_point.encode()).hexdigest()
            db.execute(
                "UPDATE sim_ln_channels SET closed_at = ?, closing_txid = ?, forced = ?"
                " WHERE id = ?",
                (self._file.clock(), txid, int(force), row["id"]),
            )
            return txid

    def closed_channel(self, channel_point: str) -> tuple[str, bool] | None:
        """``(closing_txid, forced)`` of a closed channel, None while open or unknown."""
        row = self._file.one(
            "SELECT closing_txid, forced FROM sim_ln_channels"
            " WHERE channel_point = ? AND closed_at IS NOT NULL",
            (channel_point,),
        )
        return None if row is None else (str(row["closing_txid"]), bool(row["forced"]))

    def refuse_keysend(self, pubkey: str, refused: bool = True) -> None:
        """Make ``pubkey`` refuse keysend payments (an LND node without ``--accept-keysend``),
        or (``refused=False``) accept them again."""
        with self._file.transaction() as db:
            if refused:
                db.execute("INSERT INTO sim_ln_keysend_refused (pubkey) VALUES (?) ON CONFLICT"
                           " DO NOTHING", (_check_pubkey(pubkey),))
            else:
                db.execute("DELETE FROM sim_ln_keysend_refused WHERE pubkey = ?", (pubkey,))

    def node_address(self, pubkey: str) -> str | None:
        """The ``host:port`` a simulated node pretends to listen on."""
        row = self._file.one("SELECT address FROM sim_ln_nodes WHERE pubkey = ?", (pubkey,))
        return None if row is None or row["address"] is None else str(row["address"])

    # -- one node's operations (SimLightning delegates here) --------------------------------

    def sign_message(self, pubkey: str, message: str) -> str:
        """Sign ``message`` with the simulated node's key, as LND's SignMessage would."""
        row = self._file.one("SELECT secret_hex FROM sim_ln_nodes WHERE pubkey = ?", (pubkey,))
        if row is None or row["secret_hex"] is None:
            raise InvalidValue("node", "this simulated node has no key to sign with")
        return message_signing.sign_message(bytes.fromhex(str(row["secret_hex"])), message)


    def channels_of(self, pubkey: str, peer_pubkey: str | None) -> list[Channel]:
        """Open channels of ``pubkey``, all of them or only those with ``peer_pubkey`` (read
        through the index on the pair: the treasury asks once per node for each stake check)."""
        if peer_pubkey is None:
            rows = self._file.all(
                "SELECT * FROM sim_ln_channels WHERE closed_at IS NULL"
                " AND (node_a = ? OR node_b = ?) ORDER BY id",
                (pubkey, pubkey),
            )
        else:
            rows = self._file.all(
                "SELECT * FROM sim_ln_channels WHERE closed_at IS NULL"
                " AND ((node_a = ? AND node_b = ?) OR (node_b = ? AND node_a = ?)) ORDER BY id",
                (pubkey, peer_pubkey, pubkey, peer_pubkey),
            )
        return [_channel(row, pubkey) for row in rows]

    def create_invoice(self, payee: str, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a real signed BOLT11 invoice from ``payee`` with a fresh preimage."""
        return self.invoices.create(payee, amount_msat, memo, expiry_s)

    def lookup_invoice(self, payee: str, payment_hash: str) -> Invoice:
        """An invoice ``payee`` issued; an expired OPEN one reads as CANCELED, as in LND."""
        return self.invoices.lookup(payee, payment_hash)

    def invoice_preimage(self, payment_hash: str) -> str | None:
        """The preimage of an invoice once it is settled (what the payer learns), else None."""
        return self.invoices.preimage(payment_hash)

    def lookup_payment(self, payer: str, payment_hash: str) -> PaymentResult | None:
        """The latest payment ``payer`` made for this hash, None if it never tried."""
        return self.payments.lookup(payer, payment_hash)

    def pay(self, payer: str, invoice: str, max_fee_msat: int) -> PaymentResult:
        """Pay ``invoice`` from ``payer`` atomically, at most once per payment hash (SRS-LN-04)."""
        return self.payments.pay(payer, invoice, max_fee_msat)

    def keysend(
        self, payer: str, dest: str, amount_msat: int, preimage: str, max_fee_msat: int
    ) -> PaymentResult:
        """Pay ``dest`` without an invoice, at most once per ``sha256(preimage)``."""
        return self.payments.keysend(payer, dest, amount_msat, preimage, max_fee_msat)


class SimInvoices:
    """The BOLT11 invoices the simulated nodes issued, signed with each node's key."""

    def __init__(self, file: _LedgerFile, network: str) -> None:
        self._file = file
        self.network = network

    def create(self, payee: str, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a real signed BOLT11 invoice from ``payee`` with a fresh preimage."""
        if isinstance(amount_msat, bool) or not isinstance(amount_msat, int) or amount_msat < 1:
            raise InvalidValue("amount_msat", "must be a positive integer")
        if isinstance(expiry_s, bool) or not isinstance(expiry_s, int) or expiry_s < 1:
            raise InvalidValue("expiry_s", "must be a positive integer")
        if len(memo.encode()) > 639:
            raise InvalidValue("memo", "must fit in a BOLT11 description (639 bytes)")
        row = self._file.one("SELECT secret_hex FROM sim_ln_nodes WHERE pubkey = ?", (payee,))
        if row is None or row["secret_hex"] is None:
            raise InvalidValue("node", "this simulated node has no key to sign invoices")
        preimage = os.urandom(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        created_at = self._file.clock()
        tags = Tags()
        tags.add(TagChar.payment_hash, payment_hash)
        tags.add(TagChar.payment_secret, os.urandom(32).hex())
        tags.add(TagChar.description, memo)
        tags.add(TagChar.expire_time, expiry_s)
        tags.add(TagChar.min_final_cltv_expiry, 80)
        encoded = bolt11.encode(
            Bolt11(
                currency=CURRENCY[self.network],
                date=created_at,
                tags=tags,
                amount_msat=MilliSatoshi(amount_msat),
            ),
            private_key=str(row["secret_hex"]),
        )
        with self._file.transaction() as db:
            db.execute(
                "INSERT INTO sim_ln_invoices (payment_hash, payee, bolt11, amount_msat, memo,"
                " preimage, created_at, expiry_s, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    payment_hash, payee, encoded, amount_msat, memo, preimage.hex(),
                    created_at, expiry_s, InvoiceState.OPEN.value,
                ),
            )
        return self.lookup(payee, payment_hash)

    def lookup(self, payee: str, payment_hash: str) -> Invoice:
        """An invoice ``payee`` issued; an expired OPEN one reads as CANCELED, as in LND."""
        _check_hash(payment_hash)
        row = self._file.one(
            "SELECT * FROM sim_ln_invoices WHERE payment_hash = ? AND payee = ?",
            (payment_hash, payee),
        )
        if row is None:
            raise InvoiceNotFound(f"no invoice with payment hash {payment_hash}")
        return self.from_row(row)

    def preimage(self, payment_hash: str) -> str | None:
        """The preimage of an invoice once it is settled (what the payer learns), else None."""
        row = self._file.one(
            "SELECT preimage, state FROM sim_ln_invoices WHERE payment_hash = ?",
            (payment_hash,),
        )
        if row is None or row["state"] != InvoiceState.SETTLED.value:
            return None
        return str(row["preimage"])

    def from_row(self, row: sqlite3.Row) -> Invoice:
        """The invoice a ``sim_ln_invoices`` row holds, an expired OPEN one read as CANCELED."""
        state = InvoiceState(row["state"])
        if state is InvoiceState.OPEN and self._file.clock() >= row["created_at"] + row["expiry_s"]:
            state = InvoiceState.CANCELED
        return Invoice(
            bolt11=row["bolt11"],
            payment_hash=row["payment_hash"],
            amount_msat=row["amount_msat"],
            expiry_s=row["expiry_s"],
            created_at=row["created_at"],
            state=state,
            memo=row["memo"],
            amount_paid_msat=row["amount_paid_msat"],
            settled_at=row["settled_at"],
        )


class SimPayments:
    """The payments the simulated nodes made: routed over open channels, settled atomically."""

    def __init__(self, file: _LedgerFile, invoices: SimInvoices) -> None:
        self._file = file
        self._invoices = invoices

    def lookup(self, payer: str, payment_hash: str) -> PaymentResult | None:
        """The latest payment ``payer`` made for this hash, None if it never tried."""
        _check_hash(payment_hash)
        row = self._file.one(
            "SELECT * FROM sim_ln_payments WHERE payer = ? AND payment_hash = ?",
            (payer, payment_hash),
        )
        return None if row is None else _payment(row)

    def pay(self, payer: str, invoice: str, max_fee_msat: int) -> PaymentResult:
        """Pay ``invoice`` from ``payer`` atomically, at most once per payment hash.

        Routing failures are recorded and returned as FAILED results; a later call may retry
        them. A SUCCEEDED (or IN_FLIGHT) earlier payment is returned as it is (SRS-LN-04).
        """
        if isinstance(max_fee_msat, bool) or not isinstance(max_fee_msat, int):
            raise InvalidValue("max_fee_msat", "must be an integer")
        if max_fee_msat < 0:
            raise InvalidValue("max_fee_msat", "must be ≥ 0")
        try:
            decoded = bolt11.decode(invoice)
        except Exception:
            raise InvalidValue("bolt11", "not a valid BOLT11 invoice") from None
        if decoded.amount_msat is None:
            raise InvalidValue("bolt11", "invoices without an amount are not supported")
        payment_hash = decoded.tags.get(TagChar.payment_hash).data  # type: ignore[union-attr]
        payee_tag = decoded.tags.get(TagChar.payee)
        payee = payee_tag.data if payee_tag is not None else ""
        amount_msat = int(decoded.amount_msat)
        with self._file.transaction() as db:
            earlier = _unfailed(db, payer, payment_hash)
            if earlier is not None:
                return earlier
            failure, fee_msat = self._settle(db, payer, payee, payment_hash, amount_msat,
                                             max_fee_msat)
            preimage = None
            if failure is None:
                preimage = db.execute(
                    "SELECT preimage FROM sim_ln_invoices WHERE payment_hash = ?",
                    (payment_hash,),
                ).fetchone()["preimage"]
            return self._recorded(db, payer, payment_hash, invoice, amount_msat, fee_msat,
                                  preimage, failure)

    def keysend(
        self, payer: str, dest: str, amount_msat: int, preimage: str, max_fee_msat: int
    ) -> PaymentResult:
        """Pay ``dest`` ``amount_msat`` without an invoice, the preimage given by the payer:
        at most once per ``sha256(preimage)``, like :meth:`pay` (SRS-LN-08)."""
        _check_pubkey(dest)
        for name, value, minimum in (("amount_msat", amount_msat, 1),
                                     ("max_fee_msat", max_fee_msat, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidValue(name, f"must be an integer ≥ {minimum}")
        payment_hash = payment_hash_of(preimage)
        with self._file.transaction() as db:
            earlier = _unfailed(db, payer, payment_hash)
            if earlier is not None:
                return earlier
            failure: str | None = "cannot pay to self"
            fee_msat = 0
            if dest != payer:
                refused = db.execute("SELECT 1 FROM sim_ln_keysend_refused WHERE pubkey = ?",
                                     (dest,)).fetchone()
                failure = ("incorrect payment details: the recipient does not accept keysend "
                           "payments") if refused else None
            if failure is None:
                failure, fee_msat = _route_and_move(db, payer, dest, amount_msat, max_fee_msat)
            return self._recorded(db, payer, payment_hash, "", amount_msat, fee_msat,
                                  None if failure else preimage, failure)

    def _recorded(
        self, db: sqlite3.Connection, payer: str, payment_hash: str, invoice: str,
        amount_msat: int, fee_msat: int, preimage: str | None, failure: str | None,
    ) -> PaymentResult:
        """Record the attempt (over an earlier failed one) inside the caller's transaction."""
        status = PaymentStatus.FAILED if failure else PaymentStatus.SUCCEEDED
        db.execute(
            "INSERT OR REPLACE INTO sim_ln_payments (payer, payment_hash, bolt11,"
            " amount_msat, fee_msat, status, preimage, failure_reason, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (payer, payment_hash, invoice, amount_msat, fee_msat, status.value, preimage,
             failure, self._file.clock()),
        )
        row = db.execute(
            "SELECT * FROM sim_ln_payments WHERE payer = ? AND payment_hash = ?",
            (payer, payment_hash),
        ).fetchone()
        return _payment(row)

    def _settle(
        self,
        db: sqlite3.Connection,
        payer: str,
        payee: str,
        payment_hash: str,
        amount_msat: int,
        max_fee_msat: int,
    ) -> tuple[str | None, int]:
        """Route and settle inside the caller's transaction; return (failure reason, fee)."""
        row = db.execute(
            "SELECT * FROM sim_ln_invoices WHERE payment_hash = ?", (payment_hash,)
        ).fetchone()
        if row is None or row["payee"] != payee or row["amount_msat"] != amount_msat:
            return "incorrect payment details: the payee knows no such invoice", 0
        if payee == payer:
            return "cannot pay an invoice issued by this node", 0
        state = self._invoices.from_row(row).state
        if state is InvoiceState.SETTLED:
            return "invoice is already paid", 0
        if state is not InvoiceState.OPEN:
            return "invoice expired or canceled", 0
        failure, fee_msat = _route_and_move(db, payer, payee, amount_msat, max_fee_msat)
        if failure is not None:
            return failure, 0
        db.execute(
            "UPDATE sim_ln_invoices SET state = ?, settled_at = ?, amount_paid_msat = ?"
            " WHERE payment_hash = ?",
            (InvoiceState.SETTLED.value, self._file.clock(), amount_msat, payment_hash),
        )
        return None, fee_msat


def _unfailed(db: sqlite3.Connection, payer: str, payment_hash: str) -> PaymentResult | None:
    """``payer``'s payment of this hash, unless there is none or it failed."""
    row = db.execute(
        "SELECT * FROM sim_ln_payments WHERE payer = ? AND payment_hash = ?",
        (payer, payment_hash),
    ).fetchone()
    return None if row is None or row["status"] == PaymentStatus.FAILED.value else _payment(row)


def _route_and_move(
    db: sqlite3.Connection, payer: str, payee: str, amount_msat: int, max_fee_msat: int
) -> tuple[str | None, int]:
    """Route ``amount_msat`` from ``payer`` to ``payee`` within ``max_fee_msat`` and move every
    balance on the path (inside the caller's transaction); (failure reason, fee)."""
    route = _find_route(db, payer, payee, amount_msat + max_fee_msat)
    if route is None:
        return "no route: no path of open channels with enough balance", 0
    amounts = [amount_msat]
    for _ in route[1:]:
        amounts.insert(0, amounts[0] + hop_fee_msat(amounts[0]))
    fee_msat = amounts[0] - amount_msat
    if fee_msat > max_fee_msat:
        return f"no route within the fee limit: cheapest route costs {fee_msat} msat", 0
    for (channel_id, sender_is_a), amount in zip(route, amounts, strict=True):
        out_col, in_col = (
            ("balance_a_msat", "balance_b_msat") if sender_is_a
            else ("balance_b_msat", "balance_a_msat")
        )
        db.execute(
            f"UPDATE sim_ln_channels SET {out_col} = {out_col} - ?, {in_col} = {in_col} + ?"  # noqa: S608
            " WHERE id = ?",
            (amount, amount, channel_id),
        )
    return None, fee_msat


def _find_route(
    db: sqlite3.Connection, source: str, target: str, needed_msat: int
) -> list[tuple[int, bool]] | None:
    """Shortest path of open channels whose sending side holds ``needed_msat``.

    Returns ``[(channel row id, sender is node_a), ...]`` from source to target, or None.
    """
    edges: dict[str, list[tuple[str, int, bool]]] = {}
    for row in db.execute(
        "SELECT id, node_a, node_b, balance_a_msat, balance_b_msat FROM sim_ln_channels"
        " WHERE closed_at IS NULL"
    ):
        if row["balance_a_msat"] >= needed_msat:
            edges.setdefault(row["node_a"], []).append((row["node_b"], row["id"], True))
        if row["balance_b_msat"] >= needed_msat:
            edges.setdefault(row["node_b"], []).append((row["node_a"], row["id"], False))
    previous: dict[str, tuple[str, int, bool]] = {}
    queue = deque([source])
    seen = {source}
    while queue:
        node = queue.popleft()
        if node == target:
            path: list[tuple[int, bool]] = []
            while node != source:
                before, channel_id, sender_is_a = previous[node]
                path.insert(0, (channel_id, sender_is_a))
                node = before
            return path
        for neighbour, channel_id, sender_is_a in edges.get(node, []):
            if neighbour not in seen:
                seen.add(neighbour)
                previous[neighbour] = (node, channel_id, sender_is_a)
                queue.append(neighbour)
    return None


def _channel(row: sqlite3.Row, local: str) -> Channel:
    local_is_a = row["node_a"] == local
    local_msat = row["balance_a_msat"] if local_is_a else row["balance_b_msat"]
    remote_msat = row["balance_b_msat"] if local_is_a else row["balance_a_msat"]
    return Channel(
        channel_id=f"{100 + row['id']}x1x0",
        channel_point=row["channel_point"],
        peer_pubkey=row["node_b"] if local_is_a else row["node_a"],
        capacity_sat=row["capacity_sat"],
        local_balance_sat=local_msat // 1000,
        remote_balance_sat=remote_msat // 1000,
        active=row["closed_at"] is None,
        confirmations=row["confirmations"],
    )


def _payment(row: sqlite3.Row) -> PaymentResult:
    return PaymentResult(
        payment_hash=row["payment_hash"],
        status=PaymentStatus(row["status"]),
        amount_msat=row["amount_msat"],
        fee_msat=row["fee_msat"],
        preimage=row["preimage"],
        failure_reason=row["failure_reason"],
    )


class SimLightning:
    """One simulated node's Lightning port over a :class:`SimLedger`."""

    def __init__(
        self, ledger: SimLedger, pubkey: str, *, force_close_allowed: bool = False
    ) -> None:
        self.ledger = ledger
        self.pubkey = pubkey
        self.force_close_allowed = force_close_allowed

    def __repr__(self) -> str:
        return f"SimLightning({self.pubkey[:16]}…, force_close_allowed={self.force_close_allowed})"

    def node_pubkey(self) -> str:
        """This node's identity: a 33-byte compressed public key as lower-case hex."""
        return self.pubkey

    def node_uri(self) -> str | None:
        """``pubkey@host:port`` where peers reach this node, or None if it announces none."""
        address = self.ledger.node_address(self.pubkey)
        return None if address is None else f"{self.pubkey}@{address}"

    def create_invoice(self, amount_msat: int, memo: str, expiry_s: int) -> Invoice:
        """Issue a BOLT11 invoice for ``amount_msat`` payable for ``expiry_s`` seconds."""
        return self.ledger.create_invoice(self.pubkey, amount_msat, memo, expiry_s)

    def lookup_invoice(self, payment_hash: str) -> Invoice:
        """The invoice with this hash in its current state; ``InvoiceNotFound`` if unknown."""
        return self.ledger.lookup_invoice(self.pubkey, payment_hash)

    def wait_invoice(self, payment_hash: str, timeout_s: float) -> Invoice:
        """Block until the invoice leaves OPEN or ``timeout_s`` passes; return its state then."""
        deadline = time.monotonic() + timeout_s
        while True:
            invoice = self.lookup_invoice(payment_hash)
            if invoice.state is not InvoiceState.OPEN or time.monotonic() >= deadline:
                return invoice
            time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))

    def pay(self, bolt11: str, max_fee_msat: int, timeout_s: float) -> PaymentResult:
        """Pay an invoice at most once per payment hash, routing fees capped at max_fee_msat."""
        return self.ledger.pay(self.pubkey, bolt11, max_fee_msat)

    def keysend(
        self, dest_pubkey: str, amount_msat: int, preimage: str, max_fee_msat: int,
        timeout_s: float,
    ) -> PaymentResult:
        """Pay ``dest_pubkey`` without an invoice, at most once per ``sha256(preimage)``."""
        return self.ledger.keysend(self.pubkey, dest_pubkey, amount_msat, preimage, max_fee_msat)

    def lookup_payment(self, payment_hash: str) -> PaymentResult | None:
        """The latest outgoing payment for this hash, or None if none was ever attempted."""
        return self.ledger.lookup_payment(self.pubkey, payment_hash)

    def lookup_keysend(self, key: str) -> PaymentResult | None:
        """The keysend attempt keyed ``key``: the ledger pays it under that very hash."""
        return self.lookup_payment(key)

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        """This node's open channels with ``peer_pubkey`` (stake checks, SRS-STAKE-01/02)."""
        return self.ledger.channels_of(self.pubkey, _check_pubkey(peer_pubkey))

    def sign_message(self, message: str) -> str:
        """Sign ``message`` with this node's identity key; the zbase32 signature."""
        return self.ledger.sign_message(self.pubkey, message)

    def verify_message(self, message: str, signature: str, pubkey: str) -> bool:
        """True when ``signature`` over ``message`` was made by the node ``pubkey``."""
        return message_signing.signed_by(message, signature, pubkey)

    def spendable_onchain_sat(self) -> int:
        """This node's simulated on-chain funds (SRS-LN-03)."""
        return self.ledger.onchain_sat(self.pubkey)

    def open_channel(self, peer_uri: str, amount_sat: int) -> str:
        """Open a channel of ``amount_sat`` to ``pubkey@host:port`` from on-chain funds."""
        peer = peer_uri.partition("@")[0].strip().lower()
        return self.ledger.open_funded_channel(self.pubkey, peer, amount_sat)

    def force_close(self, channel_point: str) -> str:
        """Unilaterally close a channel with the force-close credential; return the txid."""
        if not self.force_close_allowed:
            raise ForceCloseNotPermitted(
                "this Lightning adapter holds no force-close credential (SRS-SEC-13)"
            )
        return self.ledger.close_channel(channel_point, by=self.pubkey, force=True)
