"""The synthetic blobs Flower's engines train TinyNet on: :mod:`owm_adapters.models.blobs`
(kept here under its old name for the Flower apps and their tests)."""

from owm_adapters.models.blobs import BlobSpec, holdout, partition

__all__ = ["BlobSpec", "holdout", "partition"]
