"""Flower's records and the flat vector OWM aggregates, for any trainable model.

Owns the conversion between Flower's ``ArrayRecord``, a model's parameters (a torch module's
``state_dict`` or a :class:`~owm_core.ports.fl_model.TrainableModel`'s ``parameters()``) and
the flat float32 vector ``owm_core.fl.aggregation`` works on (arrays concatenated in the
record's key order). TinyNet's torch module, training and evaluation live in
:mod:`owm_adapters.models.tinynet_torch` and are re-exported here.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from owm_adapters.models.tinynet_torch import TinyNet, evaluate, initial_model, train_local


def flatten(record: ArrayRecord) -> torch.Tensor:
    """The record's arrays as one flat float32 tensor, in key order."""
    arrays = record.to_numpy_ndarrays()
    flat: torch.Tensor = torch.from_numpy(
        np.concatenate([a.astype(np.float32).ravel() for a in arrays])
    )
    return flat


def unflatten(flat: torch.Tensor, like: ArrayRecord) -> ArrayRecord:
    """An ArrayRecord with ``like``'s keys and shapes holding the values of ``flat``."""
    out = []
    offset = 0
    values = flat.detach().to(torch.float32).numpy()
    for a in like.to_numpy_ndarrays():
        out.append(values[offset : offset + a.size].reshape(a.shape).copy())
        offset += a.size
    return ArrayRecord(out)


def to_record(model: nn.Module) -> ArrayRecord:
    """The model's parameters as an ArrayRecord (state_dict order)."""
    return ArrayRecord([t.detach().cpu().numpy().copy() for t in model.state_dict().values()])


def load_record(model: nn.Module, record: ArrayRecord) -> None:
    """Load a record produced by :func:`to_record` or :func:`unflatten` into ``model``."""
    keys = list(model.state_dict().keys())
    arrays = record.to_numpy_ndarrays()
    model.load_state_dict(
        {k: torch.from_numpy(np.asarray(a)) for k, a in zip(keys, arrays, strict=True)}
    )


__all__ = [
    "TinyNet",
    "evaluate",
    "flatten",
    "initial_model",
    "load_record",
    "to_record",
    "train_local",
    "unflatten",
]
