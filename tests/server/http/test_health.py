"""/healthz and /readyz: liveness, and readiness of each backend, bounded and named."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from starlette.testclient import TestClient

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import Coordinator, build_coordinator, demo_knowledge_base
from owm_adapters.bootstrap.health import PUBLIC_MAX_AGE_S, coordinator_readiness
from owm_adapters.bootstrap.settings import CoordinatorSettings
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.probes import Readiness
from owm_adapters.services.coordinator.service import ServiceConfig
from owm_adapters.storage.sql import open_repositories, sqlite_url
from owm_adapters.storage.sql.migrate import downgrade
from owm_adapters.storage.sql.store import SqlRepositories
from owm_core.errors import LightningUnavailable
from owm_server.http.app import create_app
from tests.server.harness import StepClock

T0 = 1_750_000_000
INTERNAL_HOST = "lnd.internal.example:10009"


@attrs.frozen
class Setup:
    coordinator: Coordinator
    url: str

    def client(self, readiness: Readiness | None = None) -> TestClient:
        api = build_api(self.coordinator, l402_secret=b"\x22" * 32)
        return TestClient(create_app(api.services, readiness=readiness or api.readiness),
                          raise_server_exceptions=False)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    clock = StepClock(T0)
    ledger = SimLedger(tmp_path / "ln.sqlite3", clock=clock.now)
    ledger.add_node("treasury")
    url = sqlite_url(tmp_path / "data")
    store = open_repositories(url)
    defaults = CoordinatorSettings()
    settings = attrs.evolve(  # the provenance chain goes under tmp_path, not ~/.owm
        defaults, coordinator=attrs.evolve(defaults.coordinator, data_dir=str(tmp_path / "data"))
    )
    coordinator = build_coordinator(
        settings, store=store, treasury=ledger.lightning("treasury"),
        clock=clock, config=ServiceConfig(), slashing=False,
    )
    yield Setup(coordinator, url)
    store.close()


class HungLightning:
    """A Lightning node that never answers (a wedged LND)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def node_uri(self) -> str | None:
        self.release.wait(30)
        return None


class BrokenLightning:
    """A Lightning node whose errors name its internal address."""

    def node_uri(self) -> str | None:
        raise LightningUnavailable(f"cannot connect to {INTERNAL_HOST}: connection refused")


def with_treasury(setup: Setup, treasury: Any, timeout_s: float = 0.5) -> Readiness:
    return coordinator_readiness(attrs.evolve(setup.coordinator, treasury=treasury),
                                 timeout_s=timeout_s)


def test_healthz_answers_alive(setup: Setup) -> None:
    reply = setup.client().get("/healthz")
    assert reply.status_code == 200 and reply.json() == {"status": "alive"}


def test_readyz_answers_200_with_every_part_ok_when_all_backends_are_up(setup: Setup) -> None:
    reply = setup.client().get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "ready",
        "parts": {"database": "ok", "schema": "ok", "lightning": "ok", "chain": "ok"},
    }


def test_a_hung_lightning_node_makes_readyz_503_naming_lightning_within_the_timeout(
    setup: Setup,
) -> None:
    hung = HungLightning()
    # Long enough that the other probes answer in time on a machine busy with parallel tests.
    client = setup.client(with_treasury(setup, hung, timeout_s=2.0))
    try:
        started = time.monotonic()
        reply = client.get("/readyz")
        elapsed = time.monotonic() - started
        again = client.get("/readyz")  # the stuck probe is not started a second time
    finally:
        hung.release.set()
    assert elapsed < 4.5
    assert reply.status_code == 503
    assert reply.headers["content-type"] == "application/problem+json"
    body = reply.json()
    assert body["code"] == "not-ready" and body["failing"] == ["lightning"]
    assert "lightning" in body["detail"]
    assert body["parts"] == {
        "database": "ok", "schema": "ok", "lightning": "timeout", "chain": "ok",
    }
    assert again.status_code == 503 and again.json()["parts"]["lightning"] == "timeout"


def test_a_failing_lightning_node_is_named_by_its_part_never_by_its_host(setup: Setup) -> None:
    reply = setup.client(with_treasury(setup, BrokenLightning())).get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["parts"]["lightning"] == "unavailable"
    assert "internal.example" not in reply.text and "10009" not in reply.text


def test_a_database_behind_the_migrations_head_makes_readyz_503_naming_schema(
    setup: Setup,
) -> None:
    downgrade(setup.url, "-1")
    reply = setup.client().get("/readyz")
    assert reply.status_code == 503
    body = reply.json()
    assert body["failing"] == ["schema"] and body["parts"]["schema"] == "behind"
    assert "schema" in body["detail"]


def test_an_unreachable_database_makes_readyz_503_naming_database_never_its_path(
    setup: Setup, tmp_path: Path,
) -> None:
    client = setup.client()
    assert client.get("/readyz").status_code == 200
    store = setup.coordinator.store
    assert isinstance(store, SqlRepositories)
    database = Path(store.database.engine.url.database or "")
    store.database.engine.dispose()  # no pooled connection outlives the file's removal
    database.rename(tmp_path / "moved.sqlite3")
    database.mkdir()  # a directory where the file was: SQLite cannot open it
    try:
        time.sleep(PUBLIC_MAX_AGE_S)  # past the answer kept for the public endpoint
        reply = client.get("/readyz")
    finally:
        database.rmdir()
    assert reply.status_code == 503
    body = reply.json()
    assert "database" in body["failing"] and body["parts"]["database"] == "unavailable"
    assert str(database) not in reply.text and "sqlite" not in reply.text.lower()


def test_the_vector_store_is_a_part_when_the_knowledge_base_runs(setup: Setup) -> None:
    knowledge = demo_knowledge_base()
    assert coordinator_readiness(setup.coordinator, knowledge).check()["vector_store"] == "ok"

    def unreachable(collection: str, sub_model: str | None = None) -> int:
        raise ConnectionError("qdrant.internal.example:6333 refused")

    knowledge.store.count = unreachable  # type: ignore[method-assign]
    api = build_api(setup.coordinator, l402_secret=b"\x22" * 32, knowledge=knowledge)
    reply = TestClient(create_app(api.services, readiness=api.readiness)).get("/readyz")
    assert reply.status_code == 503 and reply.json()["failing"] == ["vector_store"]
    assert "qdrant.internal" not in reply.text


def test_with_remote_calendars_the_chain_part_is_the_coordinators_bitcoin_node(
    setup: Setup, tmp_path: Path,
) -> None:
    from owm_adapters.bootstrap.provenance import timestamping_of
    from owm_adapters.bootstrap.settings import NodeChain, ProvenanceSection
    from owm_adapters.chain.bitcoin_rpc import BitcoinRpc
    from owm_adapters.provenance.ots import OpenTimestamps

    fl = setup.coordinator.fl
    assert fl is not None
    (tmp_path / "c.sqlite3").touch()
    fl.releases.timestamping = timestamping_of(
        ProvenanceSection(backend="calendars"), tmp_path,
        NodeChain(local_chain=str(tmp_path / "c.sqlite3")),
    )
    assert coordinator_readiness(setup.coordinator).check()["chain"] == "ok"
    fl.releases.timestamping = OpenTimestamps(BitcoinRpc("http://127.0.0.1:1/"))  # refused
    parts = coordinator_readiness(setup.coordinator, timeout_s=5).check()
    assert parts["chain"] != "ok"


def test_readiness_answers_a_fresh_result_again_instead_of_probing_on_every_request() -> None:
    calls: list[int] = []
    now = [0.0]
    readiness = Readiness({"lightning": lambda: calls.append(1)}, max_age_s=2.0,
                          clock=lambda: now[0])  # fmt: skip
    assert readiness.check() == {"lightning": "ok"}
    readiness.check()
    assert len(calls) == 1
    now[0] = 2.5
    readiness.check()
    assert len(calls) == 2
