"""The small torch model OWM's FL simulation trains, and its flat-vector form.

Owns the model (:class:`TinyNet`, a two-layer MLP), local training and evaluation, and the
conversion between Flower's ``ArrayRecord``, a model's ``state_dict`` and the flat float32
vector ``owm_core.fl.aggregation`` works on (arrays concatenated in the record's key order).
Its parameter layout is the one :data:`owm_adapters.models.tinynet.PARAM_SHAPES` names, which
the node and the coordinator read with numpy alone (no torch).
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord
from torch import nn

from owm_adapters.flower.data import BlobSpec
from owm_core.market.task_types import HIDDEN


class TinyNet(nn.Module):
    """features → ``HIDDEN`` (64) → classes, ReLU; about 2.8 k parameters for the default blobs."""

    def __init__(self, spec: BlobSpec) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(spec.features, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, spec.classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x)
        return out


def initial_model(spec: BlobSpec, seed: int) -> TinyNet:
    """A freshly initialised model, the same for the same seed."""
    torch.manual_seed(seed)
    return TinyNet(spec)


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


def train_local(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> float:
    """Plain SGD on the client's data; returns the last epoch's mean loss."""
    g = torch.Generator().manual_seed(seed)
    params = list(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    last = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for s in range(0, len(x), batch_size):
            idx = order[s : s + batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            grads = torch.autograd.grad(loss, params)
            with torch.no_grad():  # plain SGD; torch.optim would import torch._dynamo (≈3 s)
                for p, grad in zip(params, grads, strict=True):
                    p.add_(grad, alpha=-lr)
            total += float(loss.detach()) * len(idx)
        last = total / len(x)
    return last


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``(loss, accuracy)`` of ``model`` on ``(x, y)``; a diverged model scores 0 accuracy."""
    model.eval()
    logits = model(x)
    if not bool(torch.isfinite(logits).all()):
        return float("inf"), 0.0
    loss = float(nn.functional.cross_entropy(logits, y))
    acc = float((logits.argmax(dim=1) == y).float().mean())
    return loss, acc
