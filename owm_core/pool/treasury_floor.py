"""Pay FPPS balances only as far as the treasury can: a payout batch never takes the treasury
below a floor (SRS-POOL-07).

FPPS credits every share at once while blocks arrive at the pool's luck, so balances can come
due before the pool has earned what pays them (the economy simulator's first finding: a
500-node year ended with the treasury at −3.3 M sat). :func:`pay_within_floor` picks which of
the balances due now are paid, given what the treasury holds:

* **oldest first**: balances are taken in order of how long they have waited (``since``, the
  time of the holder's previous payout, then ``key``), each paid *whole*, and the first that
  does not fit stops the batch — a large old balance is never passed over by newer small ones,
  so nothing starves;
* **nothing is lost**: a balance not paid stays owed (the caller keeps it credited) and is due
  again at the next sweep; once ``balance − floor`` covers everything owed (after a block, say)
  every balance is paid, each exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue


@attrs.frozen
class Owed:
    """A balance due now: who (``key``), how much (sat) and since when it has waited."""

    key: str = attrs.field(validator=fields.text(max_len=256))
    amount_sat: int = attrs.field(validator=fields.money(minimum=1))
    since: int = attrs.field(validator=fields.timestamp())


def pay_within_floor(
    owed: Iterable[Owed], balance_sat: int, floor_sat: int = 0
) -> tuple[Owed, ...]:
    """The balances of ``owed`` to pay now, oldest first, so that the treasury's
    ``balance_sat`` minus what they add up to stays ≥ ``floor_sat`` (see the module docstring).

    A treasury already at or below its floor pays nothing. Keys must be distinct.
    """
    for name, value in (("balance_sat", balance_sat), ("floor_sat", floor_sat)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidValue(name, "must be an integer")
    if floor_sat < 0:
        raise InvalidValue("floor_sat", f"must be ≥ 0, got {floor_sat}")
    listed = sorted(owed, key=lambda o: (o.since, o.key))
    if len({o.key for o in listed}) != len(listed):
        raise InvalidValue("owed", "a balance appears more than once")
    room = balance_sat - floor_sat
    paid: list[Owed] = []
    for balance in listed:
        if balance.amount_sat > room:
            break
        room -= balance.amount_sat
        paid.append(balance)
    return tuple(paid)
