"""Accepted shares and the FPPS credits they earn, written together (SRS-POOL-04, SRS-POOL-08,
SRS-PERF-11).

:class:`ShareRecorder` writes a batch of accepted shares — those one connection sent together —
with the miner's and the treasury's credits in one transaction (``Repositories.atomic``): all of
them or none, so a crash loses no credit and an acknowledged share is stored. What a share is
worth depends only on the template and the share's credited difficulty, so it is computed once
(exactly, as a fraction of a sat) and each share then adds it to the miner's carried fraction in
integer arithmetic (:meth:`owm_core.pool.fpps.MinerCredit.add_value`). The credits this pool
wrote are kept in memory (the pool is their only writer), so a share costs no read of them.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from fractions import Fraction

import attrs

from owm_core.pool import fpps
from owm_core.pool.bitcoin import AcceptedShare, BlockTemplate
from owm_core.ports.repositories.pool import MinerCreditRepository, ShareRepository

_KEPT_VALUES = 64


@attrs.define(eq=False)
class ShareRecorder:
    """Shares and their credits in one write per batch (see the module docstring)."""

    _shares: ShareRepository
    _now: Callable[[], int]
    _credits: MinerCreditRepository | None = None
    _atomic: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext
    _subsidy: int | None = attrs.field(default=None, alias="subsidy_sat")
    _known: dict[str, fpps.MinerCredit] = attrs.field(init=False, factory=dict)
    _values: dict[tuple[int, int, int, int], tuple[Fraction, Fraction]] = attrs.field(
        init=False, factory=dict
    )

    def record(self, accepted: Sequence[AcceptedShare], template: BlockTemplate) -> list[int]:
        """Store ``accepted`` and credit each (80 % to its miner, 20 % to the treasury) in one
        transaction; the msat each share credited its miner. Raises what the store raises
        (``Conflict`` for a share already stored), having written nothing."""
        now = self._now()
        updated: dict[str, fpps.MinerCredit] = {}
        credited: list[int] = []
        with self._atomic():
            self._shares.add_many(accepted, now)
            # Consecutive shares of one miner at one value are credited together (one carry
            # computation and one credit object a run, the same msat each as one by one).
            for (miner, difficulty), run in itertools.groupby(accepted, _RUN_KEY):
                miner_value, cut_value = self._value(template, difficulty)
                count = len(list(run))
                credit = self._current(miner, updated, now)
                updated[miner], msats = credit.add_values(miner_value, count, now)
                credited.extend(msats)
                treasury = self._current(fpps.TREASURY_CREDIT_ID, updated, now)
                updated[fpps.TREASURY_CREDIT_ID], _ = treasury.add_run(cut_value, count, now)
            if self._credits is not None:
                for credit in updated.values():
                    self._credits.put(credit)
        self._known.update(updated)
        return credited

    def _current(
        self, miner: str, updated: dict[str, fpps.MinerCredit], now: int
    ) -> fpps.MinerCredit:
        found = updated.get(miner) or self._known.get(miner)
        if found is None and self._credits is not None:
            found = self._credits.get(miner)
        return found or fpps.fresh_credit(miner, now)

    def _value(self, template: BlockTemplate, difficulty: Fraction) -> tuple[Fraction, Fraction]:
        """A share's exact value to its miner and to the treasury, in sat, at this template."""
        # keyed by integers: hashing a Fraction costs a modular inverse per share
        key = (template.height, template.bits, difficulty.numerator, difficulty.denominator)
        value = self._values.get(key)
        if value is None:
            terms = fpps.FppsTerms.from_block(template.height, template.bits,
                                              subsidy_sat=self._subsidy)  # fmt: skip
            value = (fpps.exact_share_value(terms, difficulty),
                     fpps.treasury_share_value(terms, difficulty))  # fmt: skip
            if len(self._values) >= _KEPT_VALUES:
                self._values.clear()
            self._values[key] = value
        return value


#: A run of shares credited together: one miner, one credited difficulty.
_RUN_KEY = operator.attrgetter("miner_id", "credited_difficulty")
