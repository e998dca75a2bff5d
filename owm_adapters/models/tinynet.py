"""TinyNet, the small MLP on synthetic blobs: its parameter layout, genesis, inference, and its
:class:`~owm_core.ports.fl_model.ModelArchitecture` (``tinynet``).

Shared by the node (which trains and runs it, :mod:`owm_adapters.node.task_exec`) and the
coordinator (which aggregates and evaluates it, :mod:`owm_adapters.services.fl_rounds`), so that
both read the same weights the same way (SRS-COORD-03, SRS-NODE-05). Its training data is the
blob partition a round names (``partition_id``); its held-out set is the blobs' test set. The
torch twin used for local training is :mod:`owm_adapters.models.tinynet_torch`; this module is
numpy only at import and imports torch lazily, so a reading task starts without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from owm_core.knowledge.datasets import Document
from owm_core.market.task_types import CLASSES, FEATURES, HIDDEN

GENESIS = "genesis"
NAME = "tinynet"
HOLDOUT_SIZE = 2_000
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


class TinyNetModel:
    """One TinyNet's weights (a :class:`~owm_core.ports.fl_model.TrainableModel`): numpy arrays,
    trained with torch (:func:`~owm_adapters.models.tinynet_torch.train_local`) on blobs
    ``(x, y)``, evaluated with numpy in float64 (reproducible across machines)."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        self._weights: dict[str, np.ndarray] = {}
        self.set_parameters([weights[name] for name, _ in PARAM_SHAPES])

    def parameters(self) -> list[np.ndarray]:
        """The arrays in :data:`PARAM_SHAPES` order (copies)."""
        return [self._weights[name].copy() for name, _ in PARAM_SHAPES]

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        """Replace the weights; ValueError unless they have :data:`PARAM_SHAPES`."""
        import numpy as np

        if len(arrays) != len(PARAM_SHAPES):
            raise ValueError(f"TinyNet has {len(PARAM_SHAPES)} arrays, got {len(arrays)}")
        for (name, shape), array in zip(PARAM_SHAPES, arrays, strict=True):
            value = np.array(array, dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{name} has shape {value.shape}, TinyNet needs {shape}")
            self._weights[name] = value

    def fit(
        self, data: Any, *, epochs: int, lr: float, batch_size: int, seed: int
    ) -> tuple[int, float]:
        """Plain SGD on the blobs ``data = (x, y)`` (torch tensors)."""
        import torch

        from owm_adapters.models.blobs import BlobSpec
        from owm_adapters.models.tinynet_torch import TinyNet, train_local

        model = TinyNet(BlobSpec(features=FEATURES, classes=CLASSES))
        model.load_state_dict({name: torch.from_numpy(self._weights[name].copy())
                               for name, _ in PARAM_SHAPES})
        x, y = torch.as_tensor(data[0], dtype=torch.float32), torch.as_tensor(data[1])
        loss = train_local(model, x, y, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
        self.set_parameters([t.detach().numpy() for t in model.state_dict().values()])
        return len(x), float(loss)

    def evaluate(self, data: Any) -> tuple[float, float]:
        """``(accuracy, cross-entropy)`` on blobs ``data = (x, y)``."""
        import numpy as np

        x, y = data
        logits = infer(self._weights, np.asarray(x, dtype=np.float64))
        labels = np.asarray(y)
        if not np.isfinite(logits).all():
            return 0.0, float("inf")
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-log_probs[np.arange(len(labels)), labels].mean())
        return float((logits.argmax(axis=1) == labels).mean()), loss


class TinyNetArchitecture:
    """The ``tinynet`` architecture: genesis seeded by the sub-model's name, blob partitions."""

    name = NAME

    def layout(self) -> Sequence[tuple[str, tuple[int, ...]]]:
        """:data:`PARAM_SHAPES`."""
        return PARAM_SHAPES

    def genesis(self, sub_model: str) -> TinyNetModel:
        """:func:`genesis_weights` of ``sub_model``."""
        return TinyNetModel(genesis_weights(sub_model))

    def round_data(
        self, round_number: int, partitions: int, documents: Sequence[Document]
    ) -> dict[str, Any]:
        """Blob partition ``round_number mod partitions`` (documents play no part)."""
        return {"partition_id": round_number % partitions}

    def local_data(self, task_input: Mapping[str, Any]) -> Any:
        """The blob partition ``task_input["partition_id"]``."""
        from owm_adapters.models.blobs import BlobSpec, partition

        return partition(BlobSpec(features=FEATURES, classes=CLASSES),
                         int(task_input["partition_id"]))

    def examples(self, task_input: Mapping[str, Any]) -> int:
        """Every blob partition holds the same number of points."""
        from owm_adapters.models.blobs import BlobSpec

        return BlobSpec(features=FEATURES, classes=CLASSES).per_client

    def holdout(self, documents: Sequence[Document]) -> Any:
        """The blobs' held-out set (:data:`HOLDOUT_SIZE` points)."""
        from owm_adapters.models.blobs import BlobSpec, holdout

        x, y = holdout(BlobSpec(features=FEATURES, classes=CLASSES), HOLDOUT_SIZE)
        return x.numpy(), y.numpy()
