"""TinyNet, the small MLP every sub-model is today: its parameter layout, genesis and inference.

Shared by the node (which trains and runs it, :mod:`owm_adapters.node.task_exec`) and the
coordinator (which aggregates and evaluates it, :mod:`owm_adapters.services.fl_rounds`), so that
both read the same weights the same way (SRS-COORD-03, SRS-NODE-05). The torch twin used for
local training is ``owm_adapters.flower.model.TinyNet``; this module is numpy only and imports it
lazily, so a reading task starts without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from owm_core.market.task_types import CLASSES, FEATURES, HIDDEN

GENESIS = "genesis"
PARAM_SHAPES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("body.0.weight", (HIDDEN, FEATURES)),
    ("body.0.bias", (HIDDEN,)),
    ("body.2.weight", (CLASSES, HIDDEN)),
    ("body.2.bias", (CLASSES,)),
)
"""Parameter names and shapes, in ``TinyNet.state_dict()`` order."""


def genesis_weights(sub_model: str) -> dict[str, np.ndarray]:
    """The deterministic starting weights of ``sub_model`` (seeded by its name)."""
    import numpy as np

    seed = int.from_bytes(hashlib.sha256(sub_model.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for name, shape in PARAM_SHAPES:
        fan_in = shape[-1] if len(shape) > 1 else shape[0]
        out[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return out


def infer(weights: Mapping[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Logits of the MLP for a batch of feature rows (float64 for reproducible rounding)."""
    import numpy as np

    w1, b1 = weights["body.0.weight"].astype(np.float64), weights["body.0.bias"].astype(np.float64)
    w2, b2 = weights["body.2.weight"].astype(np.float64), weights["body.2.bias"].astype(np.float64)
    hidden = np.maximum(features @ w1.T + b1, 0.0)
    return np.asarray(hidden @ w2.T + b2)
