"""TinyNet in torch: the module, local training and evaluation (imported only to train).

:class:`TinyNet` is a two-layer MLP whose ``state_dict`` layout is
:data:`owm_adapters.models.tinynet.PARAM_SHAPES`; the node, the coordinator and Flower's engines
train it through :class:`owm_adapters.models.tinynet.TinyNetModel`, and read it with numpy alone.
"""

from __future__ import annotations

import torch
from torch import nn

from owm_adapters.models.blobs import BlobSpec
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
