"""Synthetic federated data for TinyNet: Gaussian class blobs, split per client.

Owns the data set the OWM FL simulation trains on (``owm sim fl``) and that the deployment test
uses: ``classes`` Gaussian blobs in ``features`` dimensions around fixed random centres; every
client gets its own IID sample of ``per_client`` points, derived from ``(seed, partition id)``
so that a SuperNode process and an in-process simulation build identical partitions. A
held-out test set (``partition_id = -1``) measures the global model's accuracy.
"""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class BlobSpec:
    """Shape of the synthetic task; every field takes part in the partitions' seeds."""

    features: int = 32
    classes: int = 10
    per_client: int = 64
    spread: float = 2.2
    seed: int = 7


def _centres(spec: BlobSpec) -> torch.Tensor:
    g = torch.Generator().manual_seed(spec.seed)
    return torch.randn(spec.classes, spec.features, generator=g)


def partition(
    spec: BlobSpec, partition_id: int, size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(x, y)`` sample of client ``partition_id`` (or the test set for ``-1``)."""
    n = size if size is not None else spec.per_client
    g = torch.Generator().manual_seed(spec.seed * 1_000_003 + partition_id + 17)
    y = torch.randint(0, spec.classes, (n,), generator=g)
    x = _centres(spec)[y] + spec.spread * torch.randn(n, spec.features, generator=g) / 2.0
    return x, y


def holdout(spec: BlobSpec, size: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out evaluation sample shared by server-side evaluation."""
    return partition(spec, -1, size)
