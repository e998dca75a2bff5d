"""Published model versions and their OpenTimestamps proofs, as the public API lists them.

This module owns :class:`ModelRelease`: one :class:`~owm_core.provenance.versions.ModelVersion`
together
with the ``.ots`` proof that anchors its digest in Bitcoin and the proof's last known status
(``GET /v1/model/versions``, SRS-NODE-10, SRS-API-01). The digest and proof are produced by the
FL rounds and the timestamping port; here they are only recorded and chosen from — including
the version a task that runs a sub-model is pinned to (:func:`pinned_version`), so that every
replica of it runs the same weights.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.market.task_types import TaskType
from owm_core.market.tasks import GENESIS_VERSION
from owm_core.provenance.versions import ModelVersion, ProofStatus

MAX_PROOF_BYTES = 1_000_000
"""An ``.ots`` file is a few hundred bytes to a few KiB; anything near a megabyte is not one."""


def _to_status(value: object) -> object:
    return fields.to_enum(ProofStatus, "proof_status", value)


@attrs.frozen
class ModelRelease:
    """A model version as published: its digest, its ``.ots`` proof and the proof's status.

    ``ots_proof`` is None until the digest was stamped (status ``none``); ``checked_at`` is
    when ``proof_status`` was last established (stamping, upgrade or verification).
    """

    version: ModelVersion = attrs.field(validator=fields.instance_of(ModelVersion))
    proof_status: ProofStatus = attrs.field(
        converter=_to_status, validator=fields.instance_of(ProofStatus)
    )
    checked_at: int = attrs.field(validator=fields.timestamp())
    ots_proof: bytes | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(fields.raw_bytes(max_len=MAX_PROOF_BYTES)),
    )

    def __attrs_post_init__(self) -> None:
        if self.ots_proof is None and self.proof_status is not ProofStatus.NONE:
            raise InvalidValue("ots_proof", f"a {self.proof_status.value} release has a proof")
        if self.ots_proof is not None and self.proof_status is ProofStatus.NONE:
            raise InvalidValue("proof_status", "a release with a proof is at least pending")
        if self.checked_at < self.version.created_at:
            raise InvalidValue("checked_at", "cannot precede the version's created_at")

    @property
    def release_id(self) -> str:
        """The id the API uses: ``<sub_model>@<version>`` (URL-safe)."""
        return self.version.id

    @property
    def ots_verified(self) -> bool:
        """Whether the proof is confirmed against Bitcoin (the X-OWM-OTS-Verified header)."""
        return self.proof_status is ProofStatus.CONFIRMED


def _version_key(version: ModelVersion) -> tuple[tuple[int, ...], int, str]:
    core = version.version[len("owm-v") :].split("-")[0].split("+")[0]
    return (tuple(int(part) for part in core.split(".")), version.created_at, version.id)


def current_release(releases: Iterable[ModelRelease]) -> ModelRelease | None:
    """The release that answers queries now: the highest version, the newest on a tie.

    Its id and proof status are what every API response carries (SRS-API-01).
    """
    return max(releases, key=lambda release: _version_key(release.version), default=None)


def current_version(versions: Iterable[ModelVersion]) -> ModelVersion | None:
    """:func:`current_release`'s choice among the releases' versions alone (the store reads
    them without the proofs, then the one release chosen)."""
    return max(versions, key=_version_key, default=None)


WEIGHT_SCHEMAS = frozenset({"owm.inference.features", "owm.inference.text"})
"""The ``inference`` schemas whose output comes from a sub-model's weights; the third,
``owm.inference.passages``, is the extractive BM25 reader and reads no weights."""
DEFAULT_SUB_MODEL = "owm-base"
"""The sub-model an ``owm.inference.text`` task without ``sub_model`` runs (the node's default)."""


def weights_sub_model(task_type: str, schema_id: str, data: Mapping[str, Any]) -> str | None:
    """The sub-model whose installed weights a task's output depends on, or None.

    ``inference`` on features or text rows runs a sub-model; ``fl_training`` without
    ``global_weights`` starts from the installed weights (with them, the input is the model);
    reading passages and aggregating updates use no weights. None as well for an input no node
    would accept (a ``sub_model`` that is not text): nodes reject it before running anything.
    """
    if task_type == TaskType.INFERENCE.value and schema_id in WEIGHT_SCHEMAS:
        name = data.get("sub_model", DEFAULT_SUB_MODEL)
    elif task_type == TaskType.FL_TRAINING.value and "global_weights" not in data:
        name = data.get("sub_model")
    else:
        return None
    return name if isinstance(name, str) and name else None


def pinned_version(
    releases: Iterable[ModelRelease], sub_model: str, has_weights: Callable[[str], bool]
) -> str:
    """The version every replica of a task running ``sub_model`` runs (SRS-NODE-10, SRS-SEC-11).

    The highest release of ``sub_model`` (newest on a tie, as :func:`current_release`) whose
    proof the coordinator holds as confirmed and whose weights nodes can download
    (``has_weights(release_id)``); :data:`~owm_core.market.tasks.GENESIS_VERSION` when there is
    none. Pinning one version per task keeps honest replicas on nodes that installed different
    versions (installs roll out over minutes) from disagreeing, and so from being slashed for
    it; a confirmed proof is one every node can verify before loading the weights.
    """
    usable = [
        r for r in releases
        if r.version.sub_model == sub_model and r.proof_status is ProofStatus.CONFIRMED
        and has_weights(r.release_id)
    ]
    chosen = current_release(usable)
    return GENESIS_VERSION if chosen is None else chosen.version.version
