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

import attrs

from owm_adapters.services.coordinator.sealing import TaskSealing
from owm_adapters.services.coordinator.shared import ServiceConfig
from owm_core.coordination.endings import Ended, end_stalled, end_task
from owm_core.coordination.reveals import (
    CommitOutcome,
    RevealWindows,
    close_due_rounds,
    commit_result,
    reveal_result,
)
from owm_core.coordination.tasks import ProofOutcome
from owm_core.errors import DomainError
from owm_core.market.tasks import Settlement
from owm_core.ports.clock import Clock
from owm_core.ports.stores import MarketStore

log = logging.getLogger(__name__)

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

    def commit(self, raw: bytes) -> CommitOutcome:
        """Store a node's signed commitment (phase one); whether reveals are open now."""
        return commit_result(
            self.repositories, raw, self.clock.now(), self.config.verification, self.windows,
        )

    def reveal(self, raw: bytes, salt: bytes, output: bytes) -> ProofOutcome:
        """Accept a node's signed proof, salt and sealed output bytes (phase two); judge the
        round if nothing else is awaited. An output that does not open is InvalidValue."""
        opened = self.sealing.output_of(raw, output)
        return reveal_result(
            self.repositories, raw, salt, opened, self.clock.now(), self.config.verification,
            self._seed, self.windows,
        )

    def close_due(self) -> list[ProofOutcome]:
        """Close the windows that have passed; the verdicts this reached. A round that fails
        to close is logged and left for the next tick; the others close (SRS-PERF-07)."""
        return close_due_rounds(
            self.repositories, self.clock.now(), self.config.verification, self._seed,
            self.windows, failed=_round_not_closed,
        )

    @property
    def windows(self) -> RevealWindows:
        """The commit and reveal windows; a spot check's re-execution waits for a node as
        long as any replica (``queue_timeout_s``)."""
        return attrs.evolve(self.config.reveal_windows, check_wait_s=self.config.queue_timeout_s)

    def end_stalled(self) -> list[Ended]:
        """End the tasks whose waiting replicas no node took in time (the tick). A task that
        fails to end is logged and left for the next tick; the others end (SRS-PERF-07)."""
        ended = end_stalled(
            self.repositories, self.clock.now(), self.config.verification, self._seed,
            ENDING_BATCH, failed=_task_not_ended,
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
