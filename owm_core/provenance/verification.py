"""Verifying a model version before its weights are used (SRS-NODE-10, SRS-API-01).

The use case the node runs before loading weights and the API runs when it lists versions; it
asks the :class:`~owm_core.ports.timestamping.Timestamping` port whether the proof anchors the
version's digest in Bitcoin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.versions import (
    FailureReason,
    ModelVersion,
    Verification,
    model_digest,
    version_metadata,
)

if TYPE_CHECKING:
    from owm_core.provenance.versions import Tensor


def verify_model_version(
    version: ModelVersion,
    proof: bytes,
    timestamping: Timestamping,
    weights: Mapping[str, Tensor] | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Verification:
    """Verify that ``proof`` anchors ``version`` in Bitcoin, before its weights are used.

    With ``weights`` the digest is recomputed from the weights and the version's metadata, so
    tampered weights fail with digest_mismatch even if the proof is genuine (SRS-NODE-10: the
    node refuses them and keeps the previous version). Without weights only the recorded digest
    is checked against the proof (API listing, SRS-API-01 ``X-OWM-OTS-Verified``).
    """
    if weights is not None:
        metadata = version_metadata(version.version, version.sub_model, version.parent,
                                    extra_metadata)
        actual = model_digest(weights, metadata)
        if actual != version.digest_bytes:
            return Verification.failed(
                version.digest_bytes, FailureReason.DIGEST_MISMATCH,
                f"weights hash to {actual.hex()}, version {version.id} records {version.digest}",
            )
    return timestamping.verify(proof, version.digest_bytes)
