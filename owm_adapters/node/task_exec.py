"""What the built-in task types compute, inside the isolated worker process (SRS-NODE-05).

Owns the execution of :mod:`owm_core.market.task_types`' three task types on already validated
inputs: ``inference`` with a sub-model (a :data:`~owm_core.market.task_types.FEATURES` → 64 → 10
MLP evaluated with numpy by :mod:`owm_adapters.models.tinynet`), FL local training of the
architecture the task names (:mod:`owm_adapters.models.architectures`: TinyNet on a blob
partition, or a sub-model's LoRA adapter on the training pairs the task carries) and gradient
aggregation (``owm_core.fl.aggregation.aggregate``). Weights come from the model cache, where
:mod:`owm_adapters.node.weights` only ever installs OTS-verified versions (SRS-NODE-10);
a sub-model with no installed version answers with its deterministic ``genesis`` weights, the
same on every node. A task whose assignment pins a version runs exactly that version (kept
beside the current one by :mod:`owm_adapters.node.weights`), so that redundant replicas agree
while nodes install new versions at different times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used: a reading task starts faster without it
    import numpy as np

    from owm_core.ports.fl_model import ModelArchitecture

from owm_adapters.models.tinynet import GENESIS, genesis_weights, infer
from owm_core.errors import InvalidValue
from owm_core.market.task_types import TaskType, text_features


def load_weights(
    model_dir: str | None, sub_model: str, arch: ModelArchitecture | None = None,
    pinned: str = "",
) -> tuple[str, dict[str, np.ndarray]]:
    """The installed (verified) version of ``sub_model`` and its named tensors, else the
    genesis weights of ``arch`` (TinyNet by default).

    With ``pinned`` (the version the task's assignment names): exactly that version, from
    ``<sub_model>/<pinned>.npz`` (or ``current.npz`` when it holds it), genesis for
    ``genesis``; ValueError when this node does not hold it, never another version's weights.
    """
    from pathlib import Path

    import numpy as np

    if model_dir and pinned != GENESIS:
        folder = Path(model_dir) / sub_model
        for path in (folder / f"{pinned}.npz", folder / "current.npz")[0 if pinned else 1 :]:
            if not path.exists():
                continue
            with np.load(path, allow_pickle=False) as data:
                version = str(data["__version__"])
                if pinned and version != pinned:
                    continue
                return version, {name: data[name] for name in data.files
                                 if not (name.startswith("__") and name.endswith("__"))}
    if pinned and pinned != GENESIS:
        raise ValueError(f"model_version: {sub_model} {pinned} is not installed on this node")
    if arch is None:
        return GENESIS, genesis_weights(sub_model)
    from owm_adapters.models.architectures import named

    return GENESIS, named(arch, arch.genesis(sub_model).parameters())


def run_inference(
    data: Mapping[str, Any], model_dir: str | None, pinned: str = ""
) -> dict[str, Any]:
    """``inference``: logits and labels of the sub-model for the given rows or prompt."""
    import numpy as np

    sub_model = str(data.get("sub_model") or "owm-base")
    if "prompt" in data:
        rows = np.array([text_features(str(data["prompt"]))], dtype=np.float64)
    else:
        rows = np.array(data["features"], dtype=np.float64)
    version, weights = load_weights(model_dir, sub_model, pinned=pinned)
    logits = infer(weights, rows)
    return {
        "sub_model": sub_model,
        "model_version": version,
        "labels": [int(i) for i in logits.argmax(axis=1)],
        "logits": [[float(v) for v in row] for row in logits],
    }


def run_reading(data: Mapping[str, Any]) -> dict[str, Any]:
    """``inference`` on ``owm.inference.passages``: extractive reading of retrieved passages
    (:func:`owm_core.knowledge.reader.read_passages`; pure Python, deterministic across
    machines)."""
    from owm_core.knowledge.reader import DEFAULT_TOP_K, read_passages

    output = read_passages(
        str(data["query"]), data["passages"], int(data.get("top_k") or DEFAULT_TOP_K)
    )
    return {"sub_model": data["sub_model"], **output}


def run_training(
    data: Mapping[str, Any], model_dir: str | None, pinned: str = ""
) -> dict[str, Any]:
    """``fl_training``: one local round of the task's architecture (``model``, default
    ``tinynet``) on the data its input names; returns the trained weights, flat."""
    from owm_adapters.models.architectures import (
        TINYNET,
        architecture,
        flatten,
        from_named,
        size,
        unflatten,
    )

    arch = architecture(str(data.get("model") or TINYNET))
    sub_model = str(data["sub_model"])
    model = arch.genesis(sub_model)
    if "global_weights" in data:
        try:
            arrays = unflatten(data["global_weights"], arch)
        except InvalidValue:
            raise ValueError(f"input.global_weights: must have {size(arch)} numbers") from None
        version = "input"
    else:
        version, tensors = load_weights(model_dir, sub_model, arch, pinned)
        arrays = from_named(arch, tensors)
    model.set_parameters(arrays)
    examples, loss = model.fit(
        arch.local_data(data),
        epochs=int(data["epochs"]),
        lr=float(data["lr"]),
        batch_size=int(data["batch_size"]),
        seed=int(data["seed"]),
    )
    return {
        "sub_model": data["sub_model"],
        "round": data["round"],
        "base_version": version,
        "num_examples": examples,
        "loss": float(loss),
        "weights": flatten(model.parameters()).tolist(),
    }


def run_aggregation(data: Mapping[str, Any]) -> dict[str, Any]:
    """``gradient_aggregation``: a robust aggregate of the updates (SRS-SEC-05)."""
    import torch

    from owm_core.fl.aggregation import Rule, aggregate

    updates = torch.tensor(data["updates"], dtype=torch.float64)
    result = aggregate(updates, Rule(data["rule"]), int(data["f"]), weights=data.get("weights"))
    return {
        "rule": data["rule"],
        "f": data["f"],
        "selected": list(result.selected),
        "update": [float(v) for v in result.update.tolist()],
    }


def execute(
    task_type: str, data: Mapping[str, Any], model_dir: str | None, pinned: str = ""
) -> dict[str, Any]:
    """Run one validated task and return its JSON-serialisable output; ``pinned`` is the
    sub-model version its assignment names (empty: the installed one)."""
    kind = TaskType(task_type)
    if kind is TaskType.INFERENCE and "passages" in data:
        return run_reading(data)
    if kind is TaskType.INFERENCE:
        return run_inference(data, model_dir, pinned)
    if kind is TaskType.FL_TRAINING:
        return run_training(data, model_dir, pinned)
    return run_aggregation(data)
