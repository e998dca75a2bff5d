"""Commit–reveal for the task market of one coordinator process (SRS-SEC-11).

:class:`ResultRounds` is the market's collaborator for a replica's result, which comes in two
phases (:mod:`owm_core.coordination.reveals`): :meth:`~ResultRounds.commit` stores a node's
signed commitment, :meth:`~ResultRounds.reveal` its signed proof with the salt and the output
bytes once the round's reveals are open, and :meth:`~ResultRounds.close_due` (the market's
tick) closes the windows that have passed, abandoning uncommitted replicas and failing silent
ones, and :meth:`~ResultRounds.end_stalled` ends the tasks whose waiting replicas no node
took in time (:mod:`owm_core.coordination.endings`), judging a spot-checked replica on its own
once its re-execution is dropped. Commitments live in the store
(``repositories.commitments``), so a restart mid-round loses nothing. The caller holds the
market's lock; verdicts come back as :class:`~owm_core.coordination.tasks.ProofOutcome` for
it to dispatch and announce.

Outputs are handled here only, in :meth:`~ResultRounds.reveal`: the one place a node's output
bytes enter the coordinator. They arrive sealed to the coordinator by the proof's signer and are
opened with :class:`~.sealing.TaskSealing` before the reveal is checked; the store the rounds
write to keeps them sealed at rest (:class:`~.sealing.SealedMarketStore`; SRS-SEC-02).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import attrs

from owm_adapters.services.coordinator.sealing import TaskSealing
from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_adapters.services.sweep_cursor import SweepCursor
from owm_core.coordination.endings import Ended, end_stalled, end_task
from owm_core.coordination.reveals import (
    CommitOutcome,
    RevealWindows,
    close_due_rounds,
    commit_result,
    due_cutoff,
    reveal_result,
)
from owm_core.coordination.tasks import ProofOutcome
from owm_core.errors import DomainError
from owm_core.market.tasks import Settlement, Task
from owm_core.ports.clock import Clock
from owm_core.ports.stores import MarketStore

log = logging.getLogger(__name__)

ROUND_BATCH = 100
"""Rounds whose windows may have passed looked at per tick."""
ENDING_BATCH = 500
"""Replicas waiting past their queue time looked at per tick."""


@attrs.define(eq=False)
class ResultRounds:
    """Commit, reveal and the closing of windows over the store (module docstring)."""

    repositories: MarketStore
    sealing: TaskSealing
    clock: Clock
    config: ServiceConfig
    _seed: bytes
    _due: SweepCursor[str] = attrs.field(init=False, factory=lambda: SweepCursor(""))
    _stalled: SweepCursor[tuple[int, int]] = attrs.field(
        init=False, factory=lambda: SweepCursor((0, 0))
    )

    def commit(self, raw: bytes) -> CommitOutcome:
        """Store a node's signed commitment (phase one); whether reveals are open now."""
        return commit_result(
            self.repositories, raw, self.clock.now(), self.config.verification, self.windows,
            audience=self.sealing.public_key_hex,
        )

    def reveal(self, raw: bytes, salt: bytes, output: bytes) -> ProofOutcome:
        """Accept a node's signed proof, salt and sealed output bytes (phase two); judge the
        round if nothing else is awaited. An output that does not open is InvalidValue."""
        opened = self.sealing.output_of(raw, output)
        return reveal_result(
            self.repositories, raw, salt, opened, self.clock.now(), self.config.verification,
            self._seed, self.windows, audience=self.sealing.public_key_hex,
        )

    def close_due(self) -> list[ProofOutcome]:
        """Close the windows that have passed; the verdicts this reached. Each tick looks at
        the next :data:`ROUND_BATCH` due rounds after the last one it looked at
        (:class:`~owm_adapters.services.sweep_cursor.SweepCursor`), so every due round is
        looked at within a bounded number of ticks however many before it keep failing: such
        a round is logged and left for a later tick; the others close (SRS-PERF-07)."""
        now = self.clock.now()
        due = partial(self.repositories.commitments.rounds_started_by_after,
                      due_cutoff(now, self.windows))
        return close_due_rounds(
            self.repositories, self._due.page(due, str, ROUND_BATCH), now,
            self.config.verification, self._seed, self.windows, failed=_round_not_closed,
        )

    @property
    def windows(self) -> RevealWindows:
        """The commit and reveal windows; a spot check's re-execution waits for a node as
        long as any replica (``queue_timeout_s``)."""
        return attrs.evolve(self.config.reveal_windows, check_wait_s=self.config.queue_timeout_s)

    def end_stalled(self) -> list[Ended]:
        """End the tasks whose waiting replicas no node took in time (the tick): the next
        :data:`ENDING_BATCH` such replicas after the last one looked at, as in
        :meth:`close_due`. A task that fails to end is logged and left for a later tick; the
        others end (SRS-PERF-07)."""
        now = self.clock.now()
        page = self._stalled.page(
            partial(self.repositories.tasks.expired_after, now), _expiry_key, ENDING_BATCH
        )
        ended = end_stalled(
            self.repositories, [task for _, task in page], now, self.config.verification,
            self._seed, failed=_task_not_ended,
        )
        for done in ended:
            _log_ending(done)
        return ended

    def end_overdue(self, task_id: str, into: list[Ended]) -> None:
        """End a task past ``[funding] task_ttl_s`` (every waiting replica is stalled); what
        was done goes ``into`` the list."""
        done = end_task(
            self.repositories, task_id, self.clock.now(), self.config.verification, self._seed,
            overdue=True,
        )
        if done is not None:
            _log_ending(done)
            into.append(done)


def _expiry_key(row: tuple[int, Task]) -> tuple[int, int]:
    """Where a page of expired replicas goes on after ``row``: ``(expires_at, position)``."""
    seq, task = row
    return (task.expires_at or 0, seq)


def _round_not_closed(round_id: str, exc: DomainError) -> None:
    log.warning("round %s not closed: %s (%s); retried next tick", round_id, exc.message,
                exc.code, extra={"round_id": round_id})


def _task_not_ended(task_id: str, exc: DomainError) -> None:
    log.warning("task %s not ended: %s (%s); retried next tick", task_id, exc.message,
                exc.code, extra={"task_id": task_id})


def _log_ending(done: Ended) -> None:
    if done.expired:
        log.info("task %s expired: no node took %d replica(s) in time", done.task_id,
                 len(done.expired), extra={"task_id": done.task_id})
    for replica in done.dropped:
        log.info("replica %s dropped: no node took it in time", replica.task_id,
                 extra={"task_id": replica.task_id})


def tell_listeners(
    listeners: Sequence[Callable[[Settlement], None]], outcomes: Sequence[ProofOutcome]
) -> None:
    """Tell every listener of every settlement; a failing listener is logged, the rest run."""
    for outcome in outcomes:
        for settlement in outcome.settlements:
            for listener in listeners:
                try:
                    listener(settlement)
                except Exception:
                    log.exception("settlement listener failed")
