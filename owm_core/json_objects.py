"""Strict JSON objects: the reading rule shared by signed envelopes and task inputs.

Kept free of attrs on purpose: the node's isolated task worker imports
:mod:`owm_core.market.task_types`, and each task starts faster without it.
"""

from __future__ import annotations

from collections.abc import Callable
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
