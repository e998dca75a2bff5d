"""Federated-learning rounds: who takes part, and what a client signs (SRS-COORD-03, SRS-SEC-05).

This module owns the engine-independent rules of an FL round:

* **Selection** (:func:`select_participants`): only candidates that are not suspended and
  whose tier reaches the round's minimum are eligible. Among them, ``size`` are drawn by a
  verifiable lottery: each candidate's ticket is
  ``SHA-256(b"owm/fl-select/v1\\x00" + seed + round (u64 BE) + key)`` and the lowest tickets
  win, where ``key`` is the OWM node id when known, else the engine's handle in decimal. Given
  the round seed (published by the coordinator), anyone can recompute the selection. A round
  whose participants are too few for its rule to tolerate ``f`` Byzantine clients is refused
  before it starts (:class:`~owm_core.errors.ByzantineAssumptionViolated`).
* **What a client signs** (:func:`update_statement`): the 32-byte digest

  ``SHA-256(b"owm/fl-update/v1\\x00" + round (u64 BE) + node_id (ASCII) + b"\\x00" +
  tensor_digest)``

  where ``tensor_digest = SHA-256(b"owm/fl-tensor/v1\\x00" + dtype name + b"\\x00" + shape
  as u64 BE each + b"\\x00" + the tensor's little-endian bytes in C order)``
  (:func:`update_digest`). The client's Ed25519 key signs the statement; the coordinator
  verifies it before the update may enter aggregation, and the statement's hex is the
  evidence hash of any slashing signal raised against that update.

Lifecycle of a round (the engine adapters drive it; see docs/fl-protocol.md): select →
configure/send the global model → clients train and sign → verify signatures → robust
aggregation (:mod:`owm_core.fl.aggregation`) → anomaly scoring and slashing signals
(:mod:`owm_core.fl.anomaly`) → new global model.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from owm_core import fields
from owm_core.errors import ByzantineAssumptionViolated, InvalidValue
from owm_core.identity.keys import parse_node_id
from owm_core.nodes.tiers import Tier

if TYPE_CHECKING:  # torch stays off the import path of the store (the coordinator's start-up)
    import torch

    from owm_core.fl.aggregation import Rule

SELECT_DOMAIN = b"owm/fl-select/v1\x00"
UPDATE_DOMAIN = b"owm/fl-update/v1\x00"
UPDATE_DOMAIN_V2 = b"owm/fl-update/v2\x00"
"""Statements that also bind the update's ``num_examples`` (what FedAvg and Multi-Krum weigh
it by); v1 statements bind the round, node and weights only."""
TENSOR_DOMAIN = b"owm/fl-tensor/v1\x00"


def _optional_node_id(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        parse_node_id(value, attribute.name)


@attrs.frozen
class Candidate:
    """A node the coordinator may invite to a round.

    ``handle`` is the FL engine's own id for the node (e.g. Flower's node id); ``node_id`` is
    the OWM node id when the coordinator already knows which key stands behind the handle.
    """

    handle: int = attrs.field(validator=fields.integer(minimum=0))
    node_id: str | None = attrs.field(default=None, validator=_optional_node_id)
    tier: Tier = attrs.field(default=Tier.T1, validator=fields.instance_of(Tier))
    suspended: bool = attrs.field(default=False, validator=fields.instance_of(bool))

    @property
    def lottery_key(self) -> bytes:
        """The bytes the selection lottery hashes for this candidate."""
        return (self.node_id if self.node_id is not None else str(self.handle)).encode()


def lottery_ticket(seed: bytes, round_number: int, candidate: Candidate) -> bytes:
    """The candidate's ticket for ``round_number``: lower tickets are selected first."""
    return hashlib.sha256(
        SELECT_DOMAIN + seed + struct.pack(">Q", round_number) + candidate.lottery_key
    ).digest()


def select_participants(
    candidates: Iterable[Candidate],
    *,
    round_number: int,
    seed: bytes,
    size: int,
    rule: Rule,
    f: int,
    min_tier: Tier = Tier.T1,
) -> tuple[Candidate, ...]:
    """Choose the participants of a round by OWM's rules (SRS-COORD-03).

    Eligible: not suspended and ``tier.rank ≥ min_tier.rank``. Draws ``min(size, eligible)``
    by lottery; raises :class:`ByzantineAssumptionViolated` when that is fewer than
    ``rule.min_clients(f)``. The result is ordered by ticket.
    """
    if isinstance(round_number, bool) or not isinstance(round_number, int) or round_number < 0:
        raise InvalidValue("round_number", f"must be a non-negative integer, got {round_number!r}")
    if not isinstance(seed, bytes) or not seed:
        raise InvalidValue("seed", "must be non-empty bytes")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InvalidValue("size", f"must be a positive integer, got {size!r}")
    eligible = [c for c in candidates if not c.suspended and c.tier.rank >= min_tier.rank]
    eligible.sort(key=lambda c: lottery_ticket(seed, round_number, c))
    chosen = tuple(eligible[:size])
    needed = rule.min_clients(f)
    if len(chosen) < needed:
        raise ByzantineAssumptionViolated(
            f"round {round_number}: {rule.value} needs {needed} participants to tolerate "
            f"f={f}, only {len(chosen)} eligible"
        )
    return chosen


def update_digest(update: torch.Tensor | np.ndarray[Any, Any]) -> bytes:
    """The 32-byte canonical digest of a tensor (dtype, shape, little-endian C-order bytes)."""
    # A tensor can only exist once its creator imported torch, so duck typing suffices here.
    array = update.detach().cpu().numpy() if hasattr(update, "detach") else update
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    header = (
        TENSOR_DOMAIN
        + array.dtype.name.encode()
        + b"\x00"
        + b"".join(struct.pack(">Q", s) for s in array.shape)
        + b"\x00"
    )
    h = hashlib.sha256(header)
    h.update(little.tobytes())
    return h.digest()


def update_statement(
    round_number: int, node_id: str, tensor_digest: bytes, num_examples: int | None = None
) -> bytes:
    """The 32-byte message a client signs for its update in ``round_number``: with
    ``num_examples`` the v2 statement, which binds the count the update is weighed by too;
    without, the v1 statement of older clients (round, node and weights only)."""
    if isinstance(round_number, bool) or not isinstance(round_number, int) or round_number < 0:
        raise InvalidValue("round_number", f"must be a non-negative integer, got {round_number!r}")
    parse_node_id(node_id)
    if not isinstance(tensor_digest, bytes) or len(tensor_digest) != 32:
        raise InvalidValue("tensor_digest", "must be 32 bytes")
    body = struct.pack(">Q", round_number) + node_id.encode() + b"\x00" + tensor_digest
    if num_examples is None:
        return hashlib.sha256(UPDATE_DOMAIN + body).digest()
    if (isinstance(num_examples, bool) or not isinstance(num_examples, int)
            or not 0 <= num_examples < 2**64):
        raise InvalidValue("num_examples", f"must be in [0, 2**64), got {num_examples!r}")
    return hashlib.sha256(UPDATE_DOMAIN_V2 + body + struct.pack(">Q", num_examples)).digest()
