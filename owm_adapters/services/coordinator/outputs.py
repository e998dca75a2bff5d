"""A paying submitter reads its task's verified output, sealed to its key (SRS-SEC-02/03).

The coordinator keeps outputs sealed at rest (:class:`~.sealing.SealedMarketStore`) and shows
only states in ``GetTask`` (commit–reveal, SRS-SEC-11). :meth:`TaskOutputs.read` is the one way
an output leaves it over the control plane: the request is an ``output_request`` envelope
signed by the key that funded the task, and the answer is the agreed output sealed (NaCl box,
coordinator key as sender, context ``task-result/<task_id>``) to that key, so only the submitter
opens it, and it knows the coordinator sent it.

Who may read is the task's escrow: :attr:`~owm_core.market.funding.Escrow.funder` is the
submitter key that paid (funded work only), so no second record is kept. Anyone else — a node,
another funded key, a task funded by a treasury budget (FL rounds, queries: their services
read outputs in-process) or no task at all — gets the same ``NotFound``, so a stranger learns
nothing about which task ids exist. The request's nonce enters the clients' replay guard
(:class:`~.shared.ClientGuards`, never the nodes') only after its signature and its signer's
right to read were checked, so strangers cannot fill it.
"""

from __future__ import annotations

import attrs

from owm_adapters.services.coordinator.funding import TaskFunding
from owm_adapters.services.coordinator.market import Market
from owm_adapters.services.coordinator.sealing import TaskSealing
from owm_core.coordination.submissions import open_output_request
from owm_core.errors import InvalidTransition, NotFound
from owm_core.identity.sealing import result_context
from owm_core.market.funding import Payer
from owm_core.ports.clock import Clock
from owm_core.ports.repositories import Repositories


@attrs.frozen
class SealedResult:
    """A task's verified output, sealed by the coordinator to the key that paid for it."""

    task_id: str
    state: str
    sealed_output: bytes


@attrs.frozen
class TaskOutputs:
    """Hands verified outputs to the submitters that paid for them (module docstring)."""

    repositories: Repositories
    market: Market
    sealing: TaskSealing
    funding: TaskFunding
    clock: Clock

    def read(self, raw: bytes) -> SealedResult:
        """Answer a signed ``output_request``: the verified output sealed to its signer.

        ``SignatureInvalid`` without a valid signature, ``NotFound`` unless the signer funded
        the task, ``ReplayRejected`` for a replayed request, ``InvalidTransition`` before
        the verdict ("not verified yet") or when the task ended without one (naming its state).
        """
        envelope, body = open_output_request(raw, self.sealing.public_key_hex)
        task_id, signer = body.task_id, envelope.signer
        escrow = self.repositories.funding.escrow(task_id)
        if escrow is None or escrow.payer is not Payer.CLIENT or escrow.funder != signer:
            raise NotFound(f"no task {task_id} funded by this key")
        self.funding.accept_nonce(envelope)
        _, outcome = self.market.task(task_id)
        if outcome == "pending":
            raise InvalidTransition(f"not verified yet: task {task_id} is pending")
        if outcome != "verified":
            raise InvalidTransition(f"no verified output: task {task_id} is {outcome}")
        output = self.market.task_output(task_id) or b""
        sealed = self.sealing.seal(output, signer, result_context(task_id))
        return SealedResult(task_id, outcome, sealed)
