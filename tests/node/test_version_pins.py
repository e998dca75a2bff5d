"""Every replica of a task runs the one sub-model version the coordinator pinned it to, whatever
the node installed meanwhile (SRS-SEC-11, SRS-NODE-10).

The regression behind it, seen in the devnet end-to-end run: three replicas of an ``inference``
task, one node that had just installed ``owm-base@owm-v0.1.0`` (its proof had confirmed for
it) and two that still ran ``genesis``. The node ahead lost the 2-vs-1 verification and was
slashed for ``fake_proof`` although it was honest. Here the same scenario ends with three equal
outputs and nobody slashed, and a node answers a pinned task with exactly the pinned version:
an older one it keeps, one it installs (verified) on the spot, or none — rejecting the replica.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import numpy as np
import pytest

from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings
from owm_adapters.clock import SystemClock
from owm_adapters.control_plane.in_process import InProcessControlPlane
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.models.tinynet import GENESIS, genesis_weights, infer
from owm_adapters.node.daemon import DaemonSettings, NodeDaemon
from owm_adapters.node.pins import pinned_version_problem
from owm_adapters.node.task_log import TaskLog
from owm_adapters.node.task_runner import Limits, TaskRunner
from owm_adapters.node.weights import CachedModelRuntime
from owm_adapters.node.weights_watcher import WeightsWatcher
from owm_adapters.services.coordinator.service import CoordinatorService, ServiceConfig
from owm_adapters.storage.memory import memory_repositories
from owm_core.identity.keys import Identity
from owm_core.market.task_types import FEATURES
from owm_core.market.tasks import GENESIS_VERSION, VerificationMode, VerificationPolicy
from owm_core.nodes.control_plane import AssignedTask
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus, new_model_version
from tests.node.conftest import MANIFEST, Network
from tests.node.test_daemon import wait_for
from tests.node.test_weights import Devnet
from tests.node.test_weights_watcher import COORDINATOR, IDENTITY, FakeApi

pytestmark = pytest.mark.timeout(120)

SUB_MODEL = "owm-base"
ROWS = [[((i * 7) % 11 - 5) / 4 for i in range(FEATURES)]]
FEATURES_INPUT = json.dumps({"sub_model": SUB_MODEL, "features": ROWS}).encode()


def weights_of(scale: float) -> dict[str, np.ndarray]:
    return {name: value * scale for name, value in genesis_weights(SUB_MODEL).items()}


def model(version: str, scale: float, created_at: int) -> ModelVersion:
    return new_model_version(version, SUB_MODEL, weights_of(scale), created_at=created_at)


V1 = model("owm-v0.1.0", 2.0, 1_800_000_000)
V2 = model("owm-v0.2.0", 3.0, 1_800_000_060)


def logits(scale: float) -> list[float]:
    """The one row's logits with the weights of ``scale`` (float32 on disk, hence approx)."""
    return [float(v) for v in infer(weights_of(scale), np.array(ROWS))[0]]


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path / "chain")


@pytest.fixture
def api() -> Iterator[FakeApi]:
    server = FakeApi()
    yield server
    server.close()


def watcher(api: FakeApi, devnet: Devnet, model_dir: Path) -> WeightsWatcher:
    from owm_core.access.destinations import DestinationPolicy

    return WeightsWatcher(api.url, IDENTITY, CachedModelRuntime(model_dir), devnet.ots,
                          SystemClock(), coordinator_key=COORDINATOR, say=lambda _line: None,
                          policy=DestinationPolicy.devnet())


def publish(api: FakeApi, devnet: Devnet, version: ModelVersion, scale: float,
            anchored: bool = True) -> None:
    import torch

    proof = (devnet.anchored(version.digest_bytes) if anchored
             else devnet.ots.stamp(version.digest_bytes))
    api.publish(version, {k: torch.from_numpy(v) for k, v in weights_of(scale).items()}, proof)


def assigned(pin: str) -> AssignedTask:
    return AssignedTask(task_id="job:0", task_type="inference",
                        input_schema_id="owm.inference.features", input_schema_version=1,
                        price_msat=1, deadline_at=1, input=FEATURES_INPUT, assigned_at_ms=1,
                        model_version=pin)


# -- the node runs exactly the pinned version ---------------------------------------------------


def test_a_node_with_a_newer_current_version_answers_a_task_pinned_to_the_older_one_with_it(
    tmp_path: Path,
) -> None:
    runtime = CachedModelRuntime(tmp_path / "models")
    runtime.load(SUB_MODEL, V1.version, weights_of(2.0))
    runtime.load(SUB_MODEL, V2.version, weights_of(3.0))  # installed later: now current
    runner = TaskRunner(limits=Limits(timeout_s=60), model_dir=str(runtime.model_dir))
    run = lambda pin: runner.run("inference", "owm.inference.features", 1,  # noqa: E731
                                 FEATURES_INPUT, pin)

    pinned, unpinned, genesis = run("owm-v0.1.0"), run(""), run(GENESIS_VERSION)

    assert pinned.ok and pinned.output is not None
    assert pinned.output["model_version"] == "owm-v0.1.0"
    assert pinned.output["logits"][0] == pytest.approx(logits(2.0), rel=1e-5)
    assert unpinned.output is not None and unpinned.output["model_version"] == "owm-v0.2.0"
    assert genesis.output is not None and genesis.output["model_version"] == GENESIS
    assert genesis.output["logits"][0] == pytest.approx(logits(1.0), rel=1e-5)
    assert runtime.loaded_version(SUB_MODEL) == "owm-v0.2.0"


def test_a_worker_asked_for_a_version_the_node_lacks_fails_instead_of_using_another(
    tmp_path: Path,
) -> None:
    runtime = CachedModelRuntime(tmp_path / "models")
    runtime.load(SUB_MODEL, V2.version, weights_of(3.0))
    runner = TaskRunner(limits=Limits(timeout_s=60), model_dir=str(runtime.model_dir))

    result = runner.run("inference", "owm.inference.features", 1, FEATURES_INPUT, "owm-v0.1.0")

    assert not result.ok and result.output is None
    assert "owm-v0.1.0 is not installed on this node" in result.error


def test_a_node_lacking_the_pinned_version_installs_it_verified_and_keeps_its_newer_current(
    tmp_path: Path, api: FakeApi, devnet: Devnet
) -> None:
    models = tmp_path / "models"
    CachedModelRuntime(models).load(SUB_MODEL, V2.version, weights_of(3.0))
    publish(api, devnet, V1, 2.0)

    problem = pinned_version_problem(assigned("owm-v0.1.0"), json.loads(FEATURES_INPUT),
                                     str(models), watcher(api, devnet, models))

    assert problem is None
    runtime = CachedModelRuntime(models)
    assert runtime.has_version(SUB_MODEL, "owm-v0.1.0")
    assert runtime.loaded_version(SUB_MODEL) == "owm-v0.2.0"  # the older pin did not replace it
    assert (models / SUB_MODEL / "owm-v0.1.0.ots").is_file()  # recorded like every install


def test_a_node_that_cannot_install_the_pinned_version_names_why_and_installs_nothing(
    tmp_path: Path, api: FakeApi, devnet: Devnet
) -> None:
    models = tmp_path / "models"
    publish(api, devnet, V1, 2.0, anchored=False)  # its proof is only a calendar's promise here
    task, data = assigned("owm-v0.1.0"), json.loads(FEATURES_INPUT)

    pending = pinned_version_problem(task, data, str(models), watcher(api, devnet, models))
    unlisted = pinned_version_problem(assigned("owm-v0.7.0"), data, str(models),
                                      watcher(api, devnet, models))
    no_api = pinned_version_problem(task, data, str(models), None)

    for problem in (pending, unlisted, no_api):
        assert problem is not None and problem.field == "model_version"
    assert pending is not None and "owm-base@owm-v0.1.0 could not be installed" in pending.reason
    assert unlisted is not None and "lists no such model version" in unlisted.reason
    assert no_api is not None and "api_url" in no_api.reason
    assert not CachedModelRuntime(models).has_version(SUB_MODEL, "owm-v0.1.0")


def test_a_pin_on_a_task_that_reads_no_weights_or_on_genesis_needs_nothing_installed(
    tmp_path: Path,
) -> None:
    passages = attrs.evolve(assigned("owm-v0.1.0"), input_schema_id="owm.inference.passages")
    assert pinned_version_problem(passages, {"sub_model": SUB_MODEL}, "", None) is None
    assert pinned_version_problem(assigned(GENESIS_VERSION), {"sub_model": SUB_MODEL}, "",
                                  None) is None
    bad = pinned_version_problem(assigned("../current"), {"sub_model": SUB_MODEL}, "", None)
    assert bad is not None and bad.field == "model_version"


# -- the coordinator-level regression --------------------------------------------------------------


@attrs.define
class Fleet:
    network: Network
    store: object
    tmp: Path
    stops: list[threading.Event] = attrs.Factory(list)
    threads: list[threading.Thread] = attrs.Factory(list)

    def start(self, alias: str, weights: WeightsWatcher | None = None,
              installed: Callable[[CachedModelRuntime], None] = lambda _r: None) -> NodeDaemon:
        node = self.network.node(alias)
        data_dir = self.tmp / alias
        models = data_dir / "models"
        installed(CachedModelRuntime(models))
        settings = DaemonSettings(
            ln_node_uri=node.ln_node_uri, heartbeat_interval_s=0.2, payment_check_interval_s=0.2,
            stake_check_interval_s=0.2, stake_retry_s=0.2,
            treasury_uri=f"{self.network.treasury}@127.0.0.1:9735",
            coordinator_public_key=self.network.coordinator_key,
        )
        daemon = NodeDaemon(
            node.identity, InProcessControlPlane(self.network.service), MANIFEST,
            TaskRunner(limits=Limits(timeout_s=60), model_dir=str(models)),
            TaskLog.in_dir(data_dir), SystemClock(), settings, data_dir=data_dir,
            say=lambda _line: None, ln_signer=node.ln_signer,
        )
        daemon.feed.weights = weights  # installs pinned versions; no background polling here
        stop = threading.Event()
        thread = threading.Thread(target=lambda: daemon.run(stop), daemon=True)
        thread.start()
        self.stops.append(stop)
        self.threads.append(thread)
        wait_for(lambda: daemon.health()["coordinator"]["node_status"] == "online")
        return daemon


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """A coordinator with redundant verification on three replicas and slashing wired (the
    fake-proof detector listens to every settlement), as in the devnet."""
    ledger = SimLedger(tmp_path / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    store = memory_repositories()
    coordinator = build_coordinator(
        CoordinatorSettings(coordinator=CoordinatorSection(data_dir=str(tmp_path / "coord"))),
        store=store, treasury=ledger.lightning("treasury"),
        force_closer=ledger.lightning("treasury"),
        coordinator_key=Identity.from_seed(os.urandom(32)), clock=SystemClock(),
        config=ServiceConfig(tick_s=0.05, assignment_timeout_s=30,
                             verification=VerificationPolicy(mode=VerificationMode.REDUNDANT,
                                                             redundancy=3)),
    )
    service: CoordinatorService = coordinator.service
    service.market.pins.has_weights = lambda _release_id: True  # the FL rounds' files
    with coordinator.running(1):
        fleet = Fleet(Network(service, None, ledger, treasury), store, tmp_path)  # type: ignore[arg-type]
        yield fleet
        for stop in fleet.stops:
            stop.set()
        for thread in fleet.threads:
            thread.join(30)


def held(status: ProofStatus, version: ModelVersion) -> ModelRelease:
    proof = None if status is ProofStatus.NONE else b"proof bytes"
    return ModelRelease(version, status, version.created_at, proof)


def task_outputs(fleet: Fleet, task_id: str) -> tuple[list[dict], list[str], set[str]]:
    service = fleet.network.service
    replicas, verdict = service.await_task(task_id, timeout_s=60)
    assert verdict == "verified", [(r.task_id, r.state.value) for r in replicas]
    hashes = {r.output_hash or "" for r in replicas}
    output = json.loads(service.task_output(task_id) or b"{}")
    return [output], [r.state.value for r in replicas], hashes


def nobody_slashed(fleet: Fleet) -> None:
    store = fleet.store
    assert list(store.slashing_evidence.open_node_ids()) == []  # type: ignore[attr-defined]
    assert list(store.slashing_log.entries()) == []  # type: ignore[attr-defined]


def test_a_node_ahead_in_installed_version_agrees_with_the_others_and_nobody_is_slashed(
    fleet: Fleet,
) -> None:
    """The devnet's case: node 1 installed owm-v0.1.0, nodes 2 and 3 still run genesis, and the
    coordinator holds that version's proof as pending: the task is pinned to genesis."""
    fleet.store.releases.add(held(ProofStatus.PENDING, V1))  # type: ignore[attr-defined]
    fleet.start("ahead", installed=lambda r: r.load(SUB_MODEL, V1.version, weights_of(2.0)))
    fleet.start("behind-1")
    fleet.start("behind-2")

    fleet.network.submit("pinned-genesis", FEATURES_INPUT, schema="owm.inference.features")

    [output], states, hashes = task_outputs(fleet, "pinned-genesis")
    assert states == ["settled", "settled", "settled"] and len(hashes) == 1
    assert output["model_version"] == GENESIS
    assert output["logits"][0] == pytest.approx(logits(1.0), rel=1e-5)
    nobody_slashed(fleet)


def test_nodes_behind_install_the_pinned_version_and_a_node_further_ahead_runs_it_too(
    fleet: Fleet, api: FakeApi, devnet: Devnet
) -> None:
    """The coordinator holds owm-v0.1.0 as confirmed (owm-v0.2.0 still pending): node 1 runs
    owm-v0.2.0 as current but answers with the v0.1.0 it keeps; nodes 2 and 3 never installed
    v0.1.0 and install it, verified, when the task arrives."""
    store = fleet.store
    store.releases.add(held(ProofStatus.CONFIRMED, V1))  # type: ignore[attr-defined]
    store.releases.add(held(ProofStatus.PENDING, V2))  # type: ignore[attr-defined]
    publish(api, devnet, V1, 2.0)

    def ahead(runtime: CachedModelRuntime) -> None:
        runtime.load(SUB_MODEL, V1.version, weights_of(2.0))
        runtime.load(SUB_MODEL, V2.version, weights_of(3.0))

    fleet.start("ahead", installed=ahead)
    for alias in ("behind-1", "behind-2"):
        fleet.start(alias, weights=watcher(api, devnet, fleet.tmp / alias / "models"))

    fleet.network.submit("pinned-v1", FEATURES_INPUT, schema="owm.inference.features")

    [output], states, hashes = task_outputs(fleet, "pinned-v1")
    assert states == ["settled", "settled", "settled"] and len(hashes) == 1
    assert output["model_version"] == "owm-v0.1.0"
    assert output["logits"][0] == pytest.approx(logits(2.0), rel=1e-5)
    replicas = fleet.network.service.repositories.tasks
    assert {replicas.get(f"pinned-v1:{i}").request.model_version for i in range(3)} == {  # type: ignore[union-attr]
        "owm-v0.1.0"}
    nobody_slashed(fleet)


def test_a_replica_whose_node_cannot_get_the_pinned_version_is_rejected_not_answered(
    fleet: Fleet,
) -> None:
    """No ``api_url`` to fetch the pin from: the node rejects the replica naming
    ``model_version`` instead of answering with genesis; the other two agree and settle the
    task (down to the redundancy floor), and nobody is slashed."""
    store = fleet.store
    store.releases.add(held(ProofStatus.CONFIRMED, V1))  # type: ignore[attr-defined]
    have_v1 = lambda r: r.load(SUB_MODEL, V1.version, weights_of(2.0))  # noqa: E731
    fleet.start("has-1", installed=have_v1)
    fleet.start("has-2", installed=have_v1)
    lacking = fleet.start("lacks")

    fleet.network.submit("pinned-reject", FEATURES_INPUT, schema="owm.inference.features")

    service = fleet.network.service
    replicas, verdict = service.await_task("pinned-reject", timeout_s=60)
    assert verdict == "verified"
    assert [r.state.value for r in replicas].count("settled") == 2  # the third was dropped
    rejected = [row for row in lacking.log.recent() if row.state == "rejected"]
    assert len(rejected) == 1 and "model_version" in rejected[0].reason
    assert lacking.log.proof_of(rejected[0].replica_id) is None  # it never ran
    reasons = [r.reason for rs in service.market.rejections("pinned-reject").values() for r in rs]
    assert any("owm-base@owm-v0.1.0 is not installed" in reason for reason in reasons)
    output = json.loads(service.task_output("pinned-reject") or b"{}")
    assert output["model_version"] == "owm-v0.1.0"
    nobody_slashed(fleet)
