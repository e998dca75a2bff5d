"""Old kept model versions are pruned after an install; the installed one, the ones queued or
running tasks are pinned to and the newest few others stay, and a pruned version that is pinned
later is downloaded and verified again (SRS-NODE-10, SRS-SEC-11)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.node.pins import pinned_version_problem
from owm_adapters.node.pruning import prune_versions
from owm_adapters.node.weights import CachedModelRuntime
from owm_adapters.node.weights_watcher import WeightsWatcher
from tests.node.test_version_pins import (
    FEATURES_INPUT,
    SUB_MODEL,
    assigned,
    model,
    publish,
    watcher,
    weights_of,
)
from tests.node.test_weights import Devnet
from tests.node.test_weights_watcher import FakeApi

pytestmark = pytest.mark.timeout(120)

T0 = 1_800_000_000
VERSIONS = [model(f"owm-v0.{i}.0", 1.0 + i / 10, T0 + 60 * i) for i in range(6)]


@attrs.define
class Node:
    """A weights watcher on a fresh model cache, fed by a fake coordinator API and devnet chain."""

    api: FakeApi
    devnet: Devnet
    models: Path
    watcher: WeightsWatcher

    def install_in_turn(self, first: int, end: int) -> None:
        """Publish and poll versions ``first`` … ``end - 1`` one at a time (one FL release each)."""
        for i in range(first, end):
            publish(self.api, self.devnet, VERSIONS[i], 1.0 + i / 10)
            assert self.watcher.poll_once().installed == (VERSIONS[i].id,)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    api, devnet, models = FakeApi(), Devnet(tmp_path / "chain"), tmp_path / "models"
    yield Node(api, devnet, models, watcher(api, devnet, models))
    api.close()


def held(models: Path) -> set[str]:
    return {p.stem for p in (models / SUB_MODEL).glob("*.npz")} - {"current"}


def test_older_versions_are_deleted_after_an_install_keeping_the_current_and_newest_others(
    node: Node,
) -> None:
    models = node.models
    node.watcher.keep_versions = 2

    node.install_in_turn(0, 6)

    assert held(models) == {"owm-v0.5.0", "owm-v0.4.0", "owm-v0.3.0"}
    leftovers = {p.name for p in (models / SUB_MODEL).iterdir()
                 if p.name.startswith(("owm-v0.0.", "owm-v0.1.", "owm-v0.2."))}
    assert leftovers == set()  # weights, record and proof all gone
    assert CachedModelRuntime(models).loaded_version(SUB_MODEL) == "owm-v0.5.0"


def test_a_version_a_queued_task_is_pinned_to_is_never_pruned(
    node: Node,
) -> None:
    models = node.models
    node.watcher.keep_versions = 0
    node.watcher.in_use = lambda: {"owm-v0.0.0"}

    node.install_in_turn(0, 4)

    assert held(models) == {"owm-v0.0.0", "owm-v0.3.0"}
    runtime = CachedModelRuntime(models)
    assert runtime.has_version(SUB_MODEL, "owm-v0.0.0")  # the pinned task still finds it


def test_a_pruned_version_pinned_later_is_downloaded_and_verified_again(
    node: Node,
) -> None:
    models = node.models
    node.watcher.keep_versions = 0
    node.install_in_turn(0, 3)
    assert held(models) == {"owm-v0.2.0"}
    node.api.paths.clear()

    problem = pinned_version_problem(assigned("owm-v0.0.0"), json.loads(FEATURES_INPUT),
                                     str(models), node.watcher)

    assert problem is None
    assert "/v1/model/versions/owm-base@owm-v0.0.0/weights" in node.api.paths
    runtime = CachedModelRuntime(models)
    assert runtime.has_version(SUB_MODEL, "owm-v0.0.0")
    assert runtime.loaded_version(SUB_MODEL) == "owm-v0.2.0"  # the older pin did not replace it
    assert (models / SUB_MODEL / "owm-v0.0.0.ots").is_file()


def test_the_daemon_protects_the_versions_its_queued_and_running_tasks_are_pinned_to(
    node: Node, tmp_path: Path,
) -> None:
    from owm_adapters.clock import SystemClock
    from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
    from owm_adapters.node.task_log import TaskLog
    from owm_adapters.node.task_runner import Limits, TaskRunner
    from tests.node.conftest import MANIFEST
    from tests.node.test_weights_watcher import IDENTITY

    models = node.models
    node.watcher.keep_versions = 0
    daemon = NodeDaemon(IDENTITY, object(), MANIFEST,  # type: ignore[arg-type]
                        TaskRunner(limits=Limits(timeout_s=60), model_dir=str(models)),
                        TaskLog.in_dir(tmp_path / "data"), SystemClock(),
                        DaemonSettings(ln_node_uri="", coordinator_public_key="ab" * 32),
                        data_dir=tmp_path / "data", say=lambda _line: None, weights=node.watcher)
    node.install_in_turn(0, 1)
    daemon.ctx.current["job:0"] = (assigned("owm-v0.0.0"), 0)  # queued, pinned to v0.0.0

    node.install_in_turn(1, 3)

    assert node.watcher.in_use() == {"owm-v0.0.0"}
    assert held(models) == {"owm-v0.0.0", "owm-v0.2.0"}


# -- the rule on disk, for any sequence of installs and pins -----------------------------------


def keep(runtime: CachedModelRuntime, version: str, created_at: int) -> None:
    runtime.keep(SUB_MODEL, version, weights_of(1.0))
    record = runtime.model_dir / SUB_MODEL / f"{version}.json"
    record.write_text(json.dumps({"created_at": created_at}))


@settings(max_examples=25)
@given(
    steps=st.lists(st.tuples(st.integers(0, 9), st.sets(st.integers(0, 9), max_size=3)),
                   min_size=1, max_size=12),
    keep_n=st.integers(0, 4),
)
def test_for_any_installs_and_pins_the_kept_files_are_current_pinned_and_newest_others(
    steps: list[tuple[int, set[int]]], keep_n: int,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runtime = CachedModelRuntime(Path(tmp))
        installed_at: dict[str, int] = {}
        for clock, (number, pin_numbers) in enumerate(steps):  # the fake clock: one tick each
            version, pinned = f"v{number}", {f"v{n}" for n in pin_numbers}
            if version not in installed_at:
                keep(runtime, version, T0 + clock)
                installed_at[version] = T0 + clock
            runtime.load(SUB_MODEL, version, weights_of(1.0))
            prune_versions(runtime.model_dir, SUB_MODEL, version, pinned, keep_n)
            others = sorted((v for v in installed_at if v != version and v not in pinned),
                            key=installed_at.__getitem__, reverse=True)[:keep_n]
            expected = {version} | (pinned & installed_at.keys()) | set(others)
            assert held(runtime.model_dir) == expected
            installed_at = {v: t for v, t in installed_at.items() if v in expected}
