"""The coordinator's side of sealed task inputs and outputs (SRS-SEC-02).

A client hands its task input to the coordinator before any node is chosen, so the coordinator
is the one that seals it to a node: at dispatch, to the identity key of the node the replica
was assigned to (:meth:`TaskSealing.input_for`), fresh for every push. The node seals its
output to the coordinator's identity key; :meth:`TaskSealing.output_of` opens it with the key
that signed the proof it travels with, so an output that does not open — changed on the way,
sealed by another node, sealed for another replica — is refused before anything is stored.

At rest, inputs and outputs are kept sealed by the coordinator to itself
(:class:`SealedBlobs`, context ``stored/<kind>/<key>``): whoever reads the task rows of the
database (a backup, a replica, a stolen disk) reads no input or output without the
coordinator's identity key, and a row moved under another key does not open. Plaintext exists
only in memory, where it is needed: hashing a delivered output against its proof, sealing an
input to its node, and handing a verified output to its submitter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager

import attrs

from owm_core.coordination.wire import open_envelope
from owm_core.errors import Conflict, InvalidValue, NotFound
from owm_core.identity.envelopes import EnvelopeKind, TaskProof, open_body
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import (
    NONCE_BYTES,
    input_context,
    is_sealed,
    open_sealed,
    output_context,
    seal,
)
from owm_core.market.tasks import Task, check_task_input
from owm_core.ports.repositories import (
    CommitmentRepository,
    NodeRepository,
    ProofRepository,
    Repositories,
    TaskInputRepository,
    TaskRepository,
)


@attrs.frozen
class TaskSealing:
    """Seals inputs to nodes and opens their outputs with the coordinator's identity."""

    identity: Identity
    entropy: Callable[[int], bytes] = os.urandom

    @property
    def public_key_hex(self) -> str:
        """The key nodes seal their outputs to (``[coordinator] public_key`` in owm.toml)."""
        return self.identity.public_key_hex

    def seal(self, plaintext: bytes, recipient_public_key: str, context: str) -> bytes:
        """``plaintext`` sealed from the coordinator to ``recipient_public_key``."""
        return seal(
            plaintext,
            sender=self.identity,
            recipient_public_key=recipient_public_key,
            context=context,
            nonce=self.entropy(NONCE_BYTES),
        )

    def open(self, sealed: bytes, sender_public_key: str, context: str, field: str) -> bytes:
        """The plaintext of ``sealed`` from ``sender_public_key`` (else InvalidValue(``field``))."""
        return open_sealed(
            sealed,
            recipient=self.identity,
            sender_public_key=sender_public_key,
            context=context,
            field=field,
        )

    def input_for(self, replica_id: str, node_public_key: str, plaintext: bytes) -> bytes:
        """A replica's input as it goes down the stream of the node it is assigned to."""
        return self.seal(plaintext, node_public_key, input_context(replica_id))

    def input_for_node(self, task: Task, nodes: NodeRepository, plaintext: bytes) -> bytes:
        """The input of an assigned replica, sealed to its node's registered identity key."""
        node = nodes.get(task.node_id or "")
        if node is None:
            raise NotFound(f"task {task.task_id} is assigned to no registered node")
        return self.input_for(task.task_id, node.public_key, plaintext)

    def output_of(self, raw_proof: bytes, sealed_output: bytes) -> bytes:
        """The plaintext of the output a node delivered with its proof (b"" when none).

        Opened with the key that signed the proof and for the replica the proof names; a plain
        (unsealed) output is refused: outputs travel sealed (InvalidValue naming ``output``).
        """
        if not sealed_output:
            return b""
        if not is_sealed(sealed_output):
            raise InvalidValue("output", "must be sealed to the coordinator's public key")
        envelope = open_envelope(
            raw_proof, EnvelopeKind.TASK_PROOF, "proof_envelope", self.public_key_hex
        )
        proof = open_body(envelope)
        assert isinstance(proof, TaskProof)
        return self.open(sealed_output, envelope.signer, output_context(proof.task_id), "output")


@attrs.frozen
class SealedBlobs:
    """A task input (or output) repository whose rows are sealed by the coordinator to itself.

    Same contract as the repository it wraps, on plaintext: the same data put again is a no-op,
    other data a Conflict, data over the input bound InvalidValue naming ``field``.
    """

    inner: TaskInputRepository
    sealing: TaskSealing
    kind: str
    field: str = "input"

    def put(self, task_id: str, data: bytes) -> None:
        """Seal ``data`` for ``task_id`` and store it."""
        data = check_task_input(data, self.field)
        stored = self.inner.get(task_id)
        if stored is not None:
            if self.get(task_id) == data:
                return
            raise Conflict(f"{self.kind} of {task_id} is already stored with other data")
        me = self.sealing.public_key_hex
        self.inner.put(task_id, self.sealing.seal(data, me, self._context(task_id)))

    def get(self, task_id: str) -> bytes | None:
        """The plaintext stored for ``task_id``, or None."""
        stored = self.inner.get(task_id)
        if stored is None:
            return None
        me = self.sealing.public_key_hex
        return self.sealing.open(stored, me, self._context(task_id), f"stored {self.kind}")

    def delete(self, task_id: str) -> None:
        """Forget what is stored for ``task_id``."""
        self.inner.delete(task_id)

    def _context(self, task_id: str) -> str:
        return f"stored/{self.kind}/{task_id}"


@attrs.frozen
class SealedMarketStore:
    """The store commit–reveal (:mod:`owm_core.coordination.reveals`) and
    :func:`~owm_core.coordination.tasks.verified_output` see: outputs sealed at rest; the other
    repositories and the transaction boundary are the store's own (a commitment hides nothing
    it must)."""

    tasks: TaskRepository
    proofs: ProofRepository
    nodes: NodeRepository
    commitments: CommitmentRepository
    task_outputs: SealedBlobs
    atomic: Callable[[], AbstractContextManager[None]]

    @classmethod
    def over(cls, repositories: Repositories, sealing: TaskSealing) -> SealedMarketStore:
        """``repositories`` with its task outputs sealed by ``sealing``."""
        outputs = SealedBlobs(repositories.task_outputs, sealing, "task-output", "output")
        return cls(
            repositories.tasks, repositories.proofs, repositories.nodes,
            repositories.commitments, outputs, repositories.atomic,
        )
