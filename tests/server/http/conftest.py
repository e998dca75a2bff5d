from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.http.world import World, build_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each operation schemathesis fuzzes its own node id, ``test…[POST /v1/query]``.
    schemathesis names its items by operation, but pytest 9 builds a leaf's id from the test
    function's name alone, so all fifty had one id; pytest-xdist, which runs the suite's files
    in worker processes, keeps one test per id and ran one operation of the fifty."""
    for item in items:
        parent = item.parent
        if getattr(item, "operation_label", None) is None or parent is None:
            continue
        if item.nodeid != f"{parent.nodeid}::{item.name}":
            item._id = parent.id.child(item.name)  # type: ignore[attr-defined]
