"""Strict JSON objects: the reading rule shared by signed envelopes and task inputs.

Kept free of attrs on purpose: the node's isolated task worker imports
:mod:`owm_core.market.task_types`, and each task starts faster without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from owm_core.errors import InvalidValue


def unique_keys(field: str) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A ``json.loads`` ``object_pairs_hook`` that refuses a repeated key, naming ``field``.

    Strict JSON readers use it: with duplicates, what a signer and a verifier read can differ.
    """

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise InvalidValue(field, f"duplicate key {key!r}")
            result[key] = value
        return result

    return hook


def exact_fields(
    data: object, names: Sequence[str], stranger: str, *, container: str = "entry"
) -> dict[str, Any]:
    """``data``'s values for exactly ``names``: InvalidValue naming ``container`` if ``data``
    is not an object, else the first missing field, or the first field not in ``names`` with
    the message ``stranger`` ("is not a slashing log field", say)."""
    if not isinstance(data, Mapping):
        raise InvalidValue(container, f"must be an object, got {type(data).__name__}")
    for name in names:
        if name not in data:
            raise InvalidValue(name, "is missing")
    unknown = sorted(map(str, set(data) - set(names)))
    if unknown:
        raise InvalidValue(unknown[0], stranger)
    return {name: data[name] for name in names}
