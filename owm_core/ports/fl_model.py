"""The FL model port: the model a federated round trains for one sub-model (SRS-COORD-03).

A round moves one flat float32 vector around (the task input's ``global_weights``, the signed
upload, the robust aggregate); what the vector *is* depends on the sub-model's architecture.
:class:`ModelArchitecture` names an architecture and builds its models; :class:`TrainableModel`
is one model's weights and what a round does with them. Every engine trains through these two
Protocols only: the node's ``fl_training`` task, the coordinator's rounds (aggregation,
evaluation, releases) and Flower's engines (``owm sim fl``, the deployment adapter).

``parameters()`` is a fixed-order list of arrays whose names and shapes are
:meth:`ModelArchitecture.layout`; a version's weights file holds them under those names.
Training data is whatever the architecture reads: synthetic blobs named by a partition id, or
training pairs built from a sub-model's contributed documents, carried in the task input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from owm_core.knowledge.datasets import Document


class TrainableModel(Protocol):
    """One sub-model's trainable weights (a copy: training one never changes another)."""

    def parameters(self) -> list[npt.NDArray[np.float32]]:
        """The trainable arrays in :meth:`ModelArchitecture.layout` order."""
        ...

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        """Replace the trainable arrays (same order and shapes; ValueError otherwise)."""
        ...

    def fit(
        self, data: Any, *, epochs: int, lr: float, batch_size: int, seed: int
    ) -> tuple[int, float]:
        """Train locally on ``data``; ``(examples seen per epoch, last epoch's mean loss)``."""
        ...

    def evaluate(self, data: Any) -> tuple[float, float]:
        """``(accuracy in [0, 1], mean loss)`` on ``data``; a diverged model scores 0 and inf."""
        ...


class ModelArchitecture(Protocol):
    """A model family FL rounds can train (``tinynet``, ``minilm-lora``)."""

    name: str

    def layout(self) -> Sequence[tuple[str, tuple[int, ...]]]:
        """The trainable arrays' names and shapes, in ``parameters()`` order."""
        ...

    def genesis(self, sub_model: str) -> TrainableModel:
        """The deterministic starting model of ``sub_model`` (the same on every machine)."""
        ...

    def round_data(
        self, round_number: int, partitions: int, documents: Sequence[Document]
    ) -> dict[str, Any]:
        """The input fields of round ``round_number``'s ``fl_training`` task that name its
        training data (a partition id; training pairs from ``documents``)."""
        ...

    def local_data(self, task_input: Mapping[str, Any]) -> Any:
        """The training data an ``fl_training`` task's validated input names."""
        ...

    def examples(self, task_input: Mapping[str, Any]) -> int:
        """How many examples :meth:`local_data` of ``task_input`` holds: what an honest node
        reports as its update's ``num_examples`` (SRS-SEC-05)."""
        ...

    def holdout(self, documents: Sequence[Document]) -> Any:
        """The held-out data the coordinator scores every new version on."""
        ...
