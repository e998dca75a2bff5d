"""GitHub's own webhook payload examples, for the GitHub App's tests.

They are the ``@octokit/webhooks-examples`` npm package's (GitHub's documented examples),
fetched from the npm registry and checked against their pinned integrity by
``scripts/npm_fixtures.py`` — the same code ``scripts/fetch-ots-vectors`` uses — into
``.cache/webhooks-examples`` (``$OWM_WEBHOOK_EXAMPLES`` overrides the folder). ``scripts/test``
fetches them first; a test run without them fetches them on first use. Without the registry
the tests that need them are skipped, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _fixtures() -> Any:
    spec = importlib.util.spec_from_file_location("npm_fixtures", ROOT / "scripts/npm_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _examples() -> dict[str, list[dict[str, Any]]] | str:
    """Examples per event name, or why they are unavailable."""
    fixtures = _fixtures()
    given = os.environ.get("OWM_WEBHOOK_EXAMPLES")
    try:
        folder = Path(given) if given else fixtures.fetch_package(fixtures.WEBHOOK_EXAMPLES)
    except fixtures.FetchError as exc:
        return f"GitHub's webhook examples are unavailable: {exc}"
    index = json.loads((folder / "api.github.com" / "index.json").read_text())
    return {entry["name"]: entry["examples"] for entry in index}


def examples(event: str, action: str | None = None) -> list[dict[str, Any]]:
    """GitHub's examples of ``event`` (with ``action`` if given); skips the test without them."""
    found = _examples()
    if isinstance(found, str):
        pytest.skip(found)
    return [e for e in found[event] if action is None or e.get("action") == action]


def example(event: str, action: str | None = None) -> dict[str, Any]:
    """The first of :func:`examples`."""
    chosen = examples(event, action)
    assert chosen, f"no {event}/{action} example"
    return chosen[0]
