"""Which architecture an FL round trains, and the flat vector every engine moves around.

:func:`architecture` resolves a name (``tinynet``, ``minilm-lora``; ``[fl] model`` in
``coordinator.toml``, the ``model`` field of an ``owm.fl.train`` task, ``owm sim fl --model``)
to its
:class:`~owm_core.ports.fl_model.ModelArchitecture`; :func:`flatten` / :func:`unflatten`
convert between a model's ``parameters()`` and the flat float32 vector of task inputs, signed
uploads and robust aggregation (arrays concatenated in layout order); :func:`named` /
:func:`from_named` between that list and the named tensors of a version's weights file, whose
names say which architecture the version belongs to (:func:`architecture_of`).
Architectures are imported when first resolved: a task that only reads never loads torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from owm_core.errors import InvalidValue
from owm_core.ports.fl_model import ModelArchitecture

TINYNET = "tinynet"
MINILM_LORA = "minilm-lora"


def _tinynet() -> ModelArchitecture:
    from owm_adapters.models.tinynet import TinyNetArchitecture

    return TinyNetArchitecture()


def _minilm_lora() -> ModelArchitecture:
    from owm_adapters.models.reader_rounds import ReaderArchitecture

    return ReaderArchitecture()


_FACTORIES: dict[str, Callable[[], ModelArchitecture]] = {
    TINYNET: _tinynet,
    MINILM_LORA: _minilm_lora,
}
_BUILT: dict[str, ModelArchitecture] = {}


def names() -> tuple[str, ...]:
    """The architectures FL rounds can train, sorted."""
    return tuple(sorted(_FACTORIES))


def architecture(name: str) -> ModelArchitecture:
    """The architecture called ``name``; InvalidValue naming ``model`` if there is none."""
    if name not in _FACTORIES:
        raise InvalidValue("model", f"{name!r} is not an FL architecture ({', '.join(names())})")
    if name not in _BUILT:
        _BUILT[name] = _FACTORIES[name]()
    return _BUILT[name]


def size(arch: ModelArchitecture) -> int:
    """How many float32 values the flat vector of ``arch`` holds."""
    return sum(int(np.prod(shape)) for _, shape in arch.layout())


def flatten(arrays: Sequence[Any]) -> np.ndarray[Any, Any]:
    """``parameters()`` as one flat float32 vector (layout order)."""
    return np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays])


def unflatten(flat: Any, arch: ModelArchitecture) -> list[np.ndarray[Any, Any]]:
    """A flat vector as ``arch``'s arrays; InvalidValue naming ``weights`` for a wrong size."""
    values = np.asarray(flat, dtype=np.float32).reshape(-1)
    expected = size(arch)
    if values.size != expected:
        raise InvalidValue("weights", f"must hold {expected} values, got {values.size}")
    out, offset = [], 0
    for _, shape in arch.layout():
        n = int(np.prod(shape))
        out.append(values[offset : offset + n].reshape(shape).copy())
        offset += n
    return out


def named(arch: ModelArchitecture, arrays: Sequence[Any]) -> dict[str, np.ndarray[Any, Any]]:
    """``parameters()`` as the named tensors of a weights file."""
    return {name: np.asarray(a, dtype=np.float32)
            for (name, _), a in zip(arch.layout(), arrays, strict=True)}


def from_named(arch: ModelArchitecture, tensors: Mapping[str, Any]) -> list[np.ndarray[Any, Any]]:
    """The named tensors of a weights file as ``parameters()``; ValueError naming the first
    missing or misshapen tensor."""
    out = []
    for name, shape in arch.layout():
        if name not in tensors:
            raise ValueError(f"weights lack {name}")
        value = tensors[name]
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else value
        array = np.asarray(value, dtype=np.float32)
        if array.shape != tuple(shape):
            raise ValueError(f"{name} has shape {array.shape}, the architecture needs {shape}")
        out.append(array)
    return out


def architecture_of(tensors: Mapping[str, Any]) -> ModelArchitecture:
    """The architecture whose layout names exactly ``tensors``' keys (``__dunder__`` metadata
    aside); TinyNet when none does, so that :func:`from_named` names what is missing."""
    keys = {k for k in tensors if not (k.startswith("__") and k.endswith("__"))}
    for name in names():
        arch = architecture(name)
        if keys == {n for n, _ in arch.layout()}:
            return arch
    return architecture(TINYNET)


__all__ = [
    "MINILM_LORA",
    "TINYNET",
    "architecture",
    "architecture_of",
    "flatten",
    "from_named",
    "named",
    "names",
    "size",
    "unflatten",
]
