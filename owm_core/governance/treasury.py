"""The treasury wallet's spends: which coins pay a proposal, at what fee, and where it stands.

The treasury is a 3-of-5 ``wsh(sortedmulti(…))`` wallet (SRS-LN-09, SRS-SEC-12); holders sign
its transactions on hardware wallets, as PSBT files. This module owns the pure part: the
coins of the wallet (:class:`Utxo`), the choice of coins and fee for a payment
(:func:`plan_spend`: largest coins first, change back to the wallet unless it would be dust)
and the record of a spend on its way (:class:`TreasurySpend`). Building, signing and
finalising the PSBT is the treasury adapter's job (embit); broadcasting the chain port's.

The size estimate is for P2WSH 3-of-5 inputs (about 140 vB each: outpoint and sequence, plus a
witness of an empty item, three 73-byte signatures and the 173-byte script) and outputs of at
most 43 bytes (P2WSH/P2TR); real transactions are at most this large, so the fee rate paid is
at least the one asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.errors import InsufficientFunds, InvalidValue

TX_OVERHEAD_VB = 11
INPUT_VB = 140
OUTPUT_VB = 43
DUST_SAT = 546
"""Outputs below this are not made: the change goes to the fee instead."""
MAX_FEE_RATE_SAT_VB = 1_000

_TXID = re.compile(r"[0-9a-f]{64}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


@attrs.frozen
class Utxo:
    """An unspent output of the treasury wallet: outpoint and amount."""

    txid: str = attrs.field(validator=fields.matches(_TXID, "64 lower-case hex"))
    vout: int = attrs.field(validator=fields.integer(minimum=0, maximum=2**32 - 1))
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))


def _utxo_tuple(value: Iterable[Utxo]) -> tuple[Utxo, ...]:
    return tuple(value)


@attrs.frozen
class SpendPlan:
    """The coins that pay ``amount_sat``, the ``fee_sat`` and the ``change_sat`` (0: none)."""

    inputs: tuple[Utxo, ...] = attrs.field(converter=_utxo_tuple)
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    fee_sat: int = attrs.field(validator=fields.money())
    change_sat: int = attrs.field(validator=fields.money())


def estimated_vbytes(inputs: int, outputs: int) -> int:
    """An upper bound of the virtual size of a treasury spend (see the module docstring)."""
    return TX_OVERHEAD_VB + INPUT_VB * inputs + OUTPUT_VB * outputs


def plan_spend(utxos: Iterable[Utxo], amount_sat: int, fee_rate_sat_vb: int) -> SpendPlan:
    """Choose coins, largest first, to pay ``amount_sat`` at ``fee_rate_sat_vb``.

    Change below :data:`DUST_SAT` is left to the fee. :class:`InsufficientFunds` names what
    the wallet holds when it cannot pay.
    """
    if isinstance(amount_sat, bool) or not isinstance(amount_sat, int) or amount_sat <= 0:
        raise InvalidValue("amount_sat", f"must be an integer > 0, got {amount_sat!r}")
    rate_ok = isinstance(fee_rate_sat_vb, int) and not isinstance(fee_rate_sat_vb, bool)
    if not rate_ok or not 1 <= fee_rate_sat_vb <= MAX_FEE_RATE_SAT_VB:
        raise InvalidValue("fee_rate_sat_vb", f"must be 1 to {MAX_FEE_RATE_SAT_VB} sat/vB")
    coins = sorted(utxos, key=lambda u: (-u.amount_sat, u.txid, u.vout))
    chosen: list[Utxo] = []
    total = 0
    for coin in coins:
        chosen.append(coin)
        total += coin.amount_sat
        with_change = fee_rate_sat_vb * estimated_vbytes(len(chosen), 2)
        if total >= amount_sat + with_change + DUST_SAT:
            return SpendPlan(chosen, amount_sat, with_change, total - amount_sat - with_change)
        alone = fee_rate_sat_vb * estimated_vbytes(len(chosen), 1)
        if total >= amount_sat + alone:
            return SpendPlan(chosen, amount_sat, total - amount_sat, 0)
    held = sum(c.amount_sat for c in coins)
    short_sat = amount_sat + fee_rate_sat_vb * estimated_vbytes(len(coins), 1) - held
    raise InsufficientFunds(
        f"the treasury holds {held} sat in {len(coins)} coins; paying {amount_sat} sat with "
        f"the fee needs {short_sat} sat more",
        missing_msat=short_sat * 1_000,
    )


def _signers(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen
class TreasurySpend:
    """A treasury proposal's transaction on its way: the current PSBT (base64; holders'
    signatures merged in as they arrive), the multisig keys whose signatures it holds, and
    once broadcast its ``txid`` (SRS-GOV-06)."""

    proposal_id: str = attrs.field(validator=fields.text(max_len=128))
    psbt: str = attrs.field(validator=fields.text(max_len=1_000_000, pattern=_BASE64.pattern))
    signers: frozenset[str] = attrs.field(default=frozenset(), converter=_signers)
    txid: str | None = attrs.field(default=None)
    created_at: int = attrs.field(default=0, validator=fields.timestamp())

    def __attrs_post_init__(self) -> None:
        """A txid, when set, is 64 lower-case hex."""
        if self.txid is not None and not _TXID.fullmatch(self.txid):
            raise InvalidValue("txid", "must be 64 lower-case hex")

    @property
    def broadcast(self) -> bool:
        """Whether its transaction has gone out (then it is never changed again)."""
        return self.txid is not None

