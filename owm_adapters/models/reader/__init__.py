"""Sub-model readers: the frozen MiniLM encoder with a per-sub-model LoRA adapter and heads for
passage reranking and extractive answer spans, shared by nodes (which train and run them) and
the coordinator (which aggregates, stamps and serves them) — SRS 2.1, SRS-COORD-03.

* :mod:`.layout` — the configuration and the fixed order of the trainable arrays;
* :mod:`.model` — :class:`ReaderModel` (genesis, parameters, fit, evaluate, read);
* :mod:`.version` — a version's deterministic bytes (adapter + heads only);
* :mod:`.encoder` — the offline MiniLM and its int8 form for tier-1 nodes.

Training pairs come from :mod:`owm_core.knowledge.training_pairs`; docs/models.md describes the
whole. Importing this package does not import torch: the model is built on first use.
"""

from owm_adapters.models.reader.layout import (
    ARCHITECTURE,
    DEFAULT_CONFIG,
    ReaderConfig,
    layout,
    parameter_count,
)
from owm_adapters.models.reader.version import (
    ReaderVersion,
    VersionInvalid,
    parse_version,
    serialise_version,
)

__all__ = [
    "ARCHITECTURE",
    "DEFAULT_CONFIG",
    "ReaderConfig",
    "ReaderVersion",
    "VersionInvalid",
    "layout",
    "parameter_count",
    "parse_version",
    "serialise_version",
]
