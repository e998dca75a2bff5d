"""Narrow views of the store: what each coordination use case may touch (SRS-COORD-01/02).

The full :class:`~owm_core.ports.repositories.Repositories` holds every repository of the
coordinator; a use case takes only the Protocol below that names the repositories it reads
and writes, so its signature says what it touches and a test's fake needs no more than that.
``Repositories`` satisfies every one of them structurally (its repositories are read-only
properties here too), so callers keep passing the whole store.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from owm_core.ports.repositories import (
    ChannelBindingRepository,
    CommitmentRepository,
    ManifestRepository,
    NodeRepository,
    ProofRepository,
    StakeRepository,
    TaskInputRepository,
    TaskRepository,
)


class Transactional(Protocol):
    """A store whose writes can be grouped into one all-or-nothing commit."""

    def atomic(self) -> AbstractContextManager[None]:
        """A block whose writes (on this thread) commit together, or not at all if it raises."""
        ...


class StakeStore(Protocol):
    """Nodes and their stakes: looking up and re-verifying stakes (SRS-STAKE-02/03)."""

    @property
    def nodes(self) -> NodeRepository:
        """The nodes repository."""
        ...

    @property
    def stakes(self) -> StakeRepository:
        """The stakes repository."""
        ...

    @property
    def channel_bindings(self) -> ChannelBindingRepository:
        """Which node each stake channel backs (SRS-STAKE-01)."""
        ...


class RegistryStore(StakeStore, Transactional, Protocol):
    """The registry: nodes, their manifests and stakes, written together (SRS-COORD-01)."""

    @property
    def manifests(self) -> ManifestRepository:
        """The manifests repository."""
        ...


class TaskStore(Protocol):
    """The replicas of submitted tasks: dispatch, time-outs, rejections (SRS-COORD-02)."""

    @property
    def tasks(self) -> TaskRepository:
        """The tasks repository."""
        ...


class TaskSubmissionStore(TaskStore, Transactional, Protocol):
    """Tasks, stored all replicas or none when a task is submitted."""


class TaskOutputStore(TaskStore, Protocol):
    """Tasks and the outputs their nodes delivered (what a submitter reads)."""

    @property
    def task_outputs(self) -> TaskInputRepository:
        """Outputs nodes delivered with their proofs, keyed by replica id."""
        ...


class MarketStore(TaskOutputStore, Transactional, Protocol):
    """What accepting a proof touches: tasks, proofs, outputs, and the nodes it credits."""

    @property
    def proofs(self) -> ProofRepository:
        """The proofs repository."""
        ...

    @property
    def nodes(self) -> NodeRepository:
        """The nodes repository (reliability and earnings are credited on settlement)."""
        ...

    @property
    def commitments(self) -> CommitmentRepository:
        """Replicas' commitments of rounds not judged yet (commit–reveal)."""
        ...

