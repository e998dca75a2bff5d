"""The devnet's traffic: sample work submitted through the coordinator's APIs, without input.

A devnet is alive on its own: every ``interval_s`` the loop submits a
sample inference task (a text prompt, schema ``owm.inference.text`` v1) through the task
submission API, so that nodes execute it, the coordinator verifies it and pays rewards over the
embedded Lightning ledger; every ``query_interval_s`` it sends a sample query to
``POST /v1/query``. What it did last is written to ``traffic.json`` in the data directory for
``owm devnet status``, with the latest answer to each sample question (``answers``), so one can
see that the questions answered before a node was slashed are still answered after it.

The loop only knows two callables — submit a task, ask a query — which :func:`run_traffic`
wires to the gRPC control plane and the HTTP API of a running devnet; the tests wire fakes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from owm_adapters.control_plane.tls import ClientTls, issue_node_certificate, pinned_channel
from owm_core.identity.keys import Identity

if TYPE_CHECKING:
    from owm_adapters.devnet.layout import DevnetLayout

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = (
    "What does a Lightning channel lock?",
    "Summarise how federated learning keeps data on the nodes.",
    "Why are model versions timestamped in Bitcoin?",
    "Name three robust aggregation rules.",
)
SAMPLE_QUERIES = (
    "What is the capital of Japan?",
    "How fast does light travel?",
    "When was Magna Carta agreed?",
)
"""Questions the shipped demo datasets (owm-geo, owm-science, owm-history) can answer."""
INFERENCE_SCHEMA = ("owm.inference.text", 1)
MAX_PRICE_MSAT = 10_000
"""What a sample task pays at most (10 sat); devnet nodes ask 1 sat."""


@attrs.frozen
class SampleTask:
    """One task the loop submits."""

    task_id: str
    task_type: str
    schema_id: str
    schema_version: int
    payload: Mapping[str, Any]
    max_price_msat: int


@attrs.define
class TrafficLoop:
    """Submits sample tasks and queries on a timer (see the module docstring)."""

    submit_task: Callable[[SampleTask], None]
    ask: Callable[[str], tuple[int, Any]]
    record: Callable[[dict[str, Any]], None]
    interval_s: float = 15.0
    query_interval_s: float = 60.0
    clock: Callable[[], float] = time.time
    report: dict[str, Any] = attrs.Factory(dict)
    #: One sample GitHub contribution (bounty + reward) every ``github_interval_s``, if given.
    github_round: Callable[[], dict[str, Any]] | None = None
    github_interval_s: float = 60.0
    _sequence: int = 0
    _github_thread: threading.Thread | None = None

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: a task every ``interval_s``, a query every ``query_interval_s``.

        The first task and the first query go out at once; failures are recorded and retried
        at the next turn (the coordinator may be restarting, the query path may not exist yet).
        """
        started = self.clock()
        self.report = {
            "started_at": int(started), "tasks_submitted": 0, "task_errors": 0,
            "queries_asked": 0, "queries_answered": 0, "last_error": None,
        }
        next_task = next_query = started
        next_github = started + min(self.github_interval_s, 20.0)  # the App's first event
        while not stop.is_set():
            now = self.clock()
            if self.github_round is not None and now >= next_github:
                self._github()
                next_github = now + self.github_interval_s
            if now >= next_task:
                self.submit_sample_task(int(started))
                next_task = now + self.interval_s
            if self.query_interval_s > 0 and now >= next_query:
                answered = self.ask_sample_query()
                # Until a first answer arrives, try again soon (the query path may be warming up).
                next_query = now + (self.query_interval_s if answered else
                                    min(self.query_interval_s, max(self.interval_s, 5.0)))
            self.record(dict(self.report))
            stop.wait(max(0.0, min(next_task, next_query) - self.clock()))

    def _github(self) -> None:
        """Play a GitHub round on its own thread (the App's handlers answer each delivery after
        analysing and stamping), so sample tasks and queries keep their pace."""
        round_ = self.github_round
        assert round_ is not None
        if self._github_thread is not None and self._github_thread.is_alive():
            return

        def play() -> None:
            try:
                self.report["github"] = round_()
            except Exception as exc:  # the coordinator may be restarting: next round retries
                self.report["last_error"] = f"github: {exc}"

        self._github_thread = threading.Thread(target=play, name="devnet-github", daemon=True)
        self._github_thread.start()

    def submit_sample_task(self, run_id: int) -> bool:
        """Submit the next sample inference task; True when the coordinator took it."""
        self._sequence += 1
        prompt = SAMPLE_PROMPTS[(self._sequence - 1) % len(SAMPLE_PROMPTS)]
        task = SampleTask(
            task_id=f"devnet-{run_id}-{self._sequence}",
            task_type="inference",
            schema_id=INFERENCE_SCHEMA[0],
            schema_version=INFERENCE_SCHEMA[1],
            payload={"prompt": prompt},
            max_price_msat=MAX_PRICE_MSAT,
        )
        try:
            self.submit_task(task)
        except Exception as exc:  # the coordinator may be restarting: try again next turn
            self.report["task_errors"] += 1
            self.report["last_error"] = f"task {task.task_id}: {exc}"
            log.warning("could not submit %s: %s", task.task_id, exc)
            return False
        self.report["tasks_submitted"] += 1
        self.report["last_task_id"] = task.task_id
        self.report["last_task_at"] = int(self.clock())
        log.info("submitted %s (%s)", task.task_id, prompt)
        return True

    def ask_sample_query(self) -> bool:
        """Send the next sample query to the API; True when it was answered (HTTP 200)."""
        question = SAMPLE_QUERIES[self.report["queries_asked"] % len(SAMPLE_QUERIES)]
        self.report["queries_asked"] += 1
        asked_at = self.clock()
        try:
            status, body = self.ask(question)
        except Exception as exc:
            status, body = 0, {"detail": str(exc)}
        entry: dict[str, Any] = {
            "query": question, "status": status, "at": int(asked_at),
            "seconds": round(self.clock() - asked_at, 3),
        }
        if status == 200 and isinstance(body, dict):
            self.report["queries_answered"] += 1
            for key in ("query_id", "answer", "answered", "confidence", "sub_models_used",
                        "missing_sub_models", "model_version", "ots_verified", "latency_ms",
                        "cost_sats"):
                if key in body:
                    entry[key] = body[key]
            self.report["last_answer"] = entry
            self.report.setdefault("answers", {})[question] = entry
            log.info("query answered: %r", str(body.get("answer", ""))[:120])
        else:
            detail = body.get("detail") if isinstance(body, dict) else None
            entry["detail"] = detail
            log.info("query not answered (HTTP %s): %s", status, detail)
        self.report["last_query"] = entry
        return status == 200


def operator_tls(coordinator_fingerprint: str) -> ClientTls:
    """mTLS for a client that speaks for no node (the traffic loop submitting tasks): a fresh
    throw-away identity's certificate, and the coordinator's pin (SRS-SEC-01)."""
    identity = Identity.from_seed(os.urandom(32))
    return ClientTls(issue_node_certificate(identity, int(time.time())), coordinator_fingerprint)


def run_traffic(layout: DevnetLayout, stop: threading.Event) -> None:
    """Run the traffic loop of the devnet at ``layout`` until ``stop`` is set: tasks through
    the coordinator's gRPC ``SubmitTask``, queries through ``POST /v1/query``, the report
    written to ``traffic.json``."""
    import json

    from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import (
        coordinator_pb2_grpc as pb_grpc,
    )
    from owm_adapters.control_plane.submitter import signed_submit_request
    from owm_adapters.devnet import network
    from owm_adapters.devnet.layout import write_private
    from owm_adapters.devnet.processes import http_json
    from owm_adapters.storage.keystore import load_identity
    from owm_core.market.tasks import TaskRequest
    from owm_core.nodes.tiers import Tier

    state = network.require_state(layout)
    channel = pinned_channel(state.grpc_target, operator_tls(state.coordinator.tls_fingerprint))
    stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
    min_tier = min(node.tier for node in state.nodes)

    # A network submitter (written at provisioning): the treasury's network budget pays.
    operator = load_identity(layout.traffic_key)

    def submit(task: SampleTask) -> None:
        request = TaskRequest(
            task_id=task.task_id, task_type=task.task_type, input_schema_id=task.schema_id,
            input_schema_version=task.schema_version, min_tier=Tier(min_tier), min_vram_mb=0,
            min_ram_mb=0, gpu_required=False, max_price_msat=task.max_price_msat,
        )
        data = json.dumps(dict(task.payload)).encode()
        submission = signed_submit_request(
            operator, request, data, coordinator_key=state.coordinator.public_key
        )
        stub.SubmitTask(submission, timeout=10)

    def ask(question: str) -> tuple[int, Any]:
        return http_json(f"{state.api_url}/v1/query", body={"query": question},
                         headers={"Authorization": f"Bearer {state.api_key}"}, timeout_s=60)

    def record(report: dict[str, Any]) -> None:
        write_private(layout.traffic_file, json.dumps(report, indent=2) + "\n")

    github = _github_traffic(layout, state)
    loop = TrafficLoop(submit, ask, record, interval_s=state.traffic_interval_s,
                       query_interval_s=state.query_interval_s,
                       github_round=github.round if github is not None else None)
    try:
        loop.run(stop)
    finally:
        channel.close()
        if github is not None:
            github.standin.stop()


def _github_traffic(layout: DevnetLayout, state: Any) -> Any:
    """The devnet's GitHub stand-in, started on its port, and its sample traffic (None for a
    devnet without one)."""
    from cryptography.hazmat.primitives import serialization

    from owm_adapters.devnet.github_traffic import (
        DEVNET_APP_ID,
        INSTALLATION,
        REPOSITORY,
        GitHubTraffic,
        github_files,
    )
    from owm_adapters.devnet.processes import http_json
    from owm_adapters.github.standin import GitHubStandIn

    port = state.coordinator.github_port
    if not port:
        return None
    key_file, secret_file = github_files(layout)
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    standin = GitHubStandIn(DEVNET_APP_ID, public, lambda: int(time.time()))
    standin.add_repository(REPOSITORY, INSTALLATION)
    standin.start(port)
    webhook = f"{state.api_url}/v1/github/webhook"

    def post(headers: dict[str, str], raw: bytes) -> int:
        status, _answer = http_json(webhook, raw_body=raw, headers=headers, timeout_s=30)
        return int(status)

    secret = secret_file.read_text().strip().encode()
    return GitHubTraffic(standin, post, secret, state.nodes[0].ln_pubkey)
