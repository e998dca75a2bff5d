"""The signed FL update a node uploads to the coordinator (SRS-COORD-03, SRS-SEC-06).

This module owns the wire format of ``POST /v1/fl/updates`` and its signature rule. A node
that ran an ``fl_training`` task (schema ``owm.fl.train`` v1) uploads one JSON object::

    {"round": 3, "sub_model": "owm-base", "task_id": "<replica task id>",
     "public_key": "<64 hex>", "num_examples": 64, "loss": 0.71,
     "weights": [0.013, -0.2, ...],            # flat float32 values, TinyNet state_dict order
     "signature": "<128 hex>"}

``signature`` is the node's Ed25519 signature over
:func:`owm_core.fl.participants.update_statement` ``(round, node_id, update_digest(weights as a flat
float32 tensor), num_examples)`` (the v2 statement) where ``node_id`` is derived from
``public_key`` (:func:`owm_core.identity.keys.node_id_from_public_key`). So the signature binds
the weights, the round (no replay into a later round), the node (no re-use of another node's
update) and the example count FedAvg and Multi-Krum weigh the update by (SRS-SEC-05); the
statement's hex is the evidence hash of any slashing signal raised against the update. Older
clients sign the v1 statement, without ``num_examples``: such an upload is still accepted
(:attr:`SignedUpdate.examples_signed` is False), and its count, like every count, is held to
what the round's task assigned (:func:`owm_core.fl.rounds.admit`). ``sub_model``, ``task_id``
and ``loss`` travel unsigned: the coordinator checks them against the task it assigned (the
task is bound to one node) and never pays or slashes on them alone.

Every :class:`SignedUpdate` is authentic: construction verifies the signature. The weights are
kept as float32 little-endian bytes (exactly what the node's floats decode to), so values
survive storage bit for bit and the digest can be recomputed at any time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from owm_core import fields
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.fl.participants import update_digest, update_statement
from owm_core.identity.keys import (
    Identity,
    node_id_from_public_key,
    parse_public_key,
    parse_signature,
    verify_signature,
)

if TYPE_CHECKING:  # torch stays off the store's import path (the coordinator starts without it)
    import torch

MAX_ROUND = 10**9
MAX_PARAMETERS = 10**7
"""Most float32 values one upload may carry (the ``owm.fl.train`` schema's vector bound)."""
MAX_EXAMPLES = 10**9
DEFAULT_MAX_EXAMPLES = 10_000
"""The most examples an update may claim where what its task handed it is not known (a round
that recorded none, a Flower run whose partition size the server does not derive)."""

SUB_MODEL_RE = re.compile(fields.SLUG)
WIRE_FIELDS = (
    "round",
    "sub_model",
    "task_id",
    "public_key",
    "num_examples",
    "loss",
    "weights",
    "signature",
)
_F32_LE = np.dtype("<f4")


def _public_key(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_public_key(value, attribute.name)


def _signature(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_signature(value, attribute.name)


def _weights_bytes(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bytes):
        raise InvalidValue("weights", f"must be bytes, got {type(value).__name__}")
    if not value or len(value) % 4:
        raise InvalidValue("weights", "must hold at least one float32 value (4 bytes each)")
    if len(value) // 4 > MAX_PARAMETERS:
        raise InvalidValue("weights", f"must hold at most {MAX_PARAMETERS} values")
    if not bool(np.isfinite(np.frombuffer(value, dtype=_F32_LE)).all()):
        raise InvalidValue("weights", "must be finite float32 values")


def weights_to_bytes(weights: Sequence[float] | torch.Tensor | np.ndarray[Any, Any]) -> bytes:
    """Flat weights as float32 little-endian bytes (the stored and signed form)."""
    if hasattr(weights, "detach"):  # a torch tensor (its creator imported torch)
        array = np.asarray(weights.detach().cpu().reshape(-1).numpy(), dtype=np.float32)
    else:
        array = np.asarray(weights, dtype=np.float32).reshape(-1)
    return np.ascontiguousarray(array, dtype=_F32_LE).tobytes()


def weights_array(weights_f32le: bytes) -> np.ndarray[Any, Any]:
    """The flat float32 array stored as ``weights_f32le`` (a fresh, writable copy)."""
    return np.frombuffer(weights_f32le, dtype=_F32_LE).astype(np.float32)


def weights_tensor(weights_f32le: bytes) -> torch.Tensor:
    """The flat float32 tensor stored as ``weights_f32le`` (imports torch)."""
    import torch

    return torch.from_numpy(weights_array(weights_f32le))


def statement_for(
    round_number: int, node_id: str, weights_f32le: bytes, num_examples: int | None = None
) -> bytes:
    """The 32-byte statement the node signs for these weights in ``round_number`` (v2 with
    ``num_examples``, v1 without).

    The digest of a float32 numpy array equals that of the same values as a torch tensor
    (:func:`owm_core.fl.participants.update_digest` hashes dtype name, shape and bytes).
    """
    digest = update_digest(weights_array(weights_f32le))
    return update_statement(round_number, node_id, digest, num_examples)


def check_examples(claimed: object, max_examples: int, field: str = "num_examples") -> int:
    """``claimed`` as the example count an update may be weighed by: an integer from 1 to
    ``max_examples``, the examples its task handed it. FedAvg and Multi-Krum weigh each update
    by this count, so one inflated count would let one client outweigh every honest one; held
    to what an honest client reports, no update weighs more than one honest update
    (SRS-SEC-05). Raises :class:`InvalidValue` naming ``field``."""
    if claimed is None:
        raise InvalidValue(field, "missing: an update must say how many examples it trained on")
    if isinstance(claimed, bool) or not isinstance(claimed, int):
        raise InvalidValue(field, f"must be an integer, got {claimed!r}")
    if claimed < 1:
        raise InvalidValue(field, f"must be at least 1, got {claimed}")
    if claimed > max_examples:
        raise InvalidValue(
            field, f"must be at most {max_examples} (the examples its task assigned), got {claimed}"
        )
    return claimed


@attrs.frozen
class SignedUpdate:
    """One node's signed update for one FL round; constructing it verifies the signature.

    ``weights`` are float32 little-endian bytes; use :attr:`tensor` for arithmetic. Raises
    :class:`InvalidValue` naming the field (``signature`` when it does not verify).
    """

    round: int = attrs.field(validator=fields.integer(minimum=0, maximum=MAX_ROUND))
    sub_model: str = attrs.field(validator=fields.matches(SUB_MODEL_RE, "a sub-model slug"))
    task_id: str = attrs.field(validator=fields.text(max_len=128))
    public_key: str = attrs.field(validator=_public_key)
    num_examples: int = attrs.field(validator=fields.integer(minimum=1, maximum=MAX_EXAMPLES))
    loss: float = attrs.field(validator=fields.number(0.0))
    weights: bytes = attrs.field(validator=_weights_bytes, repr=False)
    signature: str = attrs.field(validator=_signature)
    #: Whether the signature binds ``num_examples`` (v2); False for an older client's v1.
    examples_signed: bool = attrs.field(init=False, default=True, eq=False)

    def __attrs_post_init__(self) -> None:
        signature = bytes.fromhex(self.signature)
        for signed in (True, False):
            try:
                statement = statement_for(self.round, self.node_id, self.weights,
                                          self.num_examples if signed else None)
                verify_signature(self.public_key, statement, signature)
            except SignatureInvalid:
                continue
            object.__setattr__(self, "examples_signed", signed)
            return
        raise InvalidValue(
            "signature", "does not verify over (round, node id, weights digest, num_examples)"
        )

    @property
    def node_id(self) -> str:
        """The uploader's node id, derived from its public key."""
        return node_id_from_public_key(self.public_key)

    @property
    def parameters(self) -> int:
        """How many float32 values the update holds."""
        return len(self.weights) // 4

    @property
    def tensor(self) -> torch.Tensor:
        """The weights as a flat float32 tensor (a fresh copy)."""
        return weights_tensor(self.weights)

    @property
    def digest(self) -> str:
        """Hex of :func:`owm_core.fl.participants.update_digest` of the weights."""
        return update_digest(weights_array(self.weights)).hex()

    @property
    def statement(self) -> bytes:
        """The signed 32-byte statement; its hex is the evidence hash of slashing signals."""
        examples = self.num_examples if self.examples_signed else None
        return statement_for(self.round, self.node_id, self.weights, examples)

    def to_body(self) -> dict[str, Any]:
        """The JSON wire body (``weights`` as a list of floats, exact float32 values)."""
        return {
            "round": self.round,
            "sub_model": self.sub_model,
            "task_id": self.task_id,
            "public_key": self.public_key,
            "num_examples": self.num_examples,
            "loss": float(self.loss),
            "weights": [float(v) for v in np.frombuffer(self.weights, dtype=_F32_LE)],
            "signature": self.signature,
        }


def sign_update(
    identity: Identity,
    *,
    round_number: int,
    sub_model: str,
    task_id: str,
    num_examples: int,
    loss: float,
    weights: Sequence[float] | torch.Tensor | np.ndarray[Any, Any],
) -> dict[str, Any]:
    """Sign a trained model for upload; returns the JSON body of ``POST /v1/fl/updates``.

    ``weights`` is the flat trained model (converted to float32, as the coordinator will).
    """
    raw = weights_to_bytes(weights)
    statement = statement_for(round_number, identity.node_id, raw, num_examples)
    update = SignedUpdate(
        round=round_number,
        sub_model=sub_model,
        task_id=task_id,
        public_key=identity.public_key_hex,
        num_examples=num_examples,
        loss=loss,
        weights=raw,
        signature=identity.sign(statement).hex(),
    )
    return update.to_body()


def _weights_from_wire(value: object) -> bytes:
    if not isinstance(value, list) or not value:
        raise InvalidValue("weights", "must be a non-empty list of numbers")
    if len(value) > MAX_PARAMETERS:
        raise InvalidValue("weights", f"must hold at most {MAX_PARAMETERS} values")
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int | float):
            raise InvalidValue(f"weights[{i}]", "must be a number")
        if not math.isfinite(item):
            raise InvalidValue(f"weights[{i}]", "must be finite")
    array = np.asarray(value, dtype=np.float64)
    if bool((np.abs(array) > float(np.finfo(np.float32).max)).any()):
        raise InvalidValue("weights", "values must fit in float32")
    return weights_to_bytes(array)


def _loss_from_wire(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue("loss", "must be a number")
    return float(value)


@attrs.frozen
class UpdateClaim:
    """What an upload says about itself, read without decoding its weights or checking its
    signature: nothing here is proven yet. It lets the coordinator refuse an upload no open
    round expects from that node before paying for the tensor and the Ed25519 check
    (SRS-SEC-06). Each field is checked as :class:`SignedUpdate` checks it."""

    round: int = attrs.field(validator=fields.integer(minimum=0, maximum=MAX_ROUND))
    task_id: str = attrs.field(validator=fields.text(max_len=128))
    public_key: str = attrs.field(validator=_public_key)
    parameters: int = attrs.field(validator=fields.integer(minimum=1, maximum=MAX_PARAMETERS))
    """How many values ``weights`` holds (the list's length, its items unread)."""

    @property
    def node_id(self) -> str:
        """The node id the claimed public key derives."""
        return node_id_from_public_key(self.public_key)


def read_claim(body: Mapping[str, Any]) -> UpdateClaim:
    """The :class:`UpdateClaim` of an uploaded body (InvalidValue naming the field); its cost
    does not grow with what the weights hold."""
    if not isinstance(body, Mapping):
        raise InvalidValue("body", "must be a JSON object")
    for name in ("round", "task_id", "public_key", "weights"):
        if name not in body:
            raise InvalidValue(name, "is required")
    weights = body["weights"]
    if not isinstance(weights, list) or not weights:
        raise InvalidValue("weights", "must be a non-empty list of numbers")
    if len(weights) > MAX_PARAMETERS:
        raise InvalidValue("weights", f"must hold at most {MAX_PARAMETERS} values")
    return UpdateClaim(body["round"], body["task_id"], body["public_key"], len(weights))


def parse_update(body: Mapping[str, Any]) -> SignedUpdate:
    """Check an uploaded body and its signature; the :class:`SignedUpdate` it carries.

    Every field is required and no other is allowed (a typo must not pass silently). Raises
    :class:`InvalidValue` naming the field (``weights[i]`` for a bad value, ``signature``
    when the signature does not verify).
    """
    if not isinstance(body, Mapping):
        raise InvalidValue("body", "must be a JSON object")
    extra = sorted(set(body) - set(WIRE_FIELDS))
    if extra:
        raise InvalidValue(str(extra[0]), "is not a field of an FL update")
    for name in WIRE_FIELDS:
        if name not in body:
            raise InvalidValue(name, "is required")
    decoded = {
        "loss": _loss_from_wire(body["loss"]),
        "weights": _weights_from_wire(body["weights"]),
    }
    return SignedUpdate(**{**body, **decoded})  # exactly its fields, each validated


__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "MAX_PARAMETERS",
    "WIRE_FIELDS",
    "SignedUpdate",
    "UpdateClaim",
    "check_examples",
    "parse_update",
    "read_claim",
    "sign_update",
    "statement_for",
    "weights_array",
    "weights_tensor",
    "weights_to_bytes",
]
