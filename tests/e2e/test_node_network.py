"""A coordinator and two node daemons as real processes on localhost (issue item 11).

``owm-coordinator serve`` (SQLite and the embedded Lightning ledger in a temp dir, spot
verification so one node suffices per task, a 10 s assignment timeout) and two
``owm-node start`` daemons, each with its own identity, task log and stake channel opened in
the coordinator's ledger. Tasks are submitted over gRPC (SubmitTask). Node A asks less, so it
wins the tasks both can run; node B alone serves gradient aggregation. One fl_training task
is running on A when A is SIGKILLed: the assignment times out and B completes it — no task
is lost. Everything is polled with deadlines, and every process is killed at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2 as pb
from owm_adapters.control_plane.grpc_gen.owm.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from owm_adapters.control_plane.submitter import signed_submit_request
from owm_adapters.lightning.embedded import SimLedger
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier
from tests.server.harness import OPERATOR
from tests.tls_support import secure_channel

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STAKE_SAT = 100_000
ASSIGNMENT_TIMEOUT_S = 10


class Proc:
    """A child process whose stdout is collected line by line on a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
            text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for line in self.lines:
                    found = regex.search(line)
                    if found:
                        return found
                remaining = deadline - time.monotonic()
                ended = self.popen.poll() is not None and not self._reader.is_alive()
                if remaining <= 0 or ended:
                    raise AssertionError(
                        f"{pattern!r} not seen from {self.args[0]}; output:\n" + self.output()
                    )
                self._cond.wait(min(remaining, 0.2))

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def poll(check: Callable[[], object], timeout_s: float, what: str) -> object:
    """``check()``'s first true value within ``timeout_s``. A check that cannot read what it
    looks at (a health endpoint slow to answer on a loaded machine: ``OSError``) is "not yet",
    not a failure; the last such error is named if time runs out."""
    deadline = time.monotonic() + timeout_s
    unread: OSError | None = None
    while True:
        try:
            value = check()
        except OSError as error:
            value, unread = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}"
                                 + (f" (last read failed: {unread!r})" if unread else ""))
        time.sleep(0.05)


def health(port: int) -> dict[str, object]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 503 while not serving still carries the document
        return json.loads(exc.read())


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OWM_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, object]]:
    procs: list[Proc] = []
    coord_dir = tmp_path / "coordinator"
    coord_dir.mkdir()
    ledger = SimLedger(coord_dir / "lightning.sqlite3")
    treasury = ledger.add_node("treasury")
    (tmp_path / "coordinator.toml").write_text(
        "[coordinator]\n"
        f'data_dir = "{coord_dir}"\n'
        'grpc_listen = "127.0.0.1:0"\n'
        'metrics_listen = ""\n'
        'api_listen = ""\n'
        f'signing_key_path = "{coord_dir / "coordinator.key"}"\n'
        "grace_period_s = 2\n"
        "[tasks]\n"
        'verification = "spot"\n'
        "spot_rate_ppm = 0\n"
        f"assignment_timeout_s = {ASSIGNMENT_TIMEOUT_S}\n"
        "[funding]\n"
        f'network_submitters = ["{OPERATOR.public_key_hex}"]\n'
    )
    coordinator = Proc(
        [str(BIN / "owm-coordinator"), "serve", "--config", str(tmp_path / "coordinator.toml")],
        base_env(), tmp_path,
    )
    procs.append(coordinator)
    try:
        port = int(coordinator.wait_line(r"gRPC control plane\s+127\.0\.0\.1:(\d+)", 60).group(1))
        pin = coordinator.wait_line(r"TLS fingerprint\s+([0-9a-f]{64})", 30).group(1)
        key = coordinator.wait_line(r"coordinator key\s+([0-9a-f]{64})", 30).group(1)
        coordinator.wait_line("ready", 30)
        nodes: dict[str, dict[str, object]] = {}
        for name, ask, types in (
            ("a", 500, '["fl_training", "inference"]'),
            ("b", 1000, '["fl_training", "gradient_aggregation", "inference"]'),
        ):
            node_dir = tmp_path / f"node-{name}"
            config = tmp_path / f"node-{name}.toml"
            env = base_env()
            init = subprocess.run(
                [str(BIN / "owm-node"), "init", "--config", str(tmp_path / f"init-{name}.toml"),
                 "--data-dir", str(node_dir)],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )
            assert init.returncode == 0, init.stderr
            ln_pubkey = ledger.add_node(f"node-{name}")
            ledger.open_channel(treasury, ln_pubkey, 2 * STAKE_SAT, push_sat=STAKE_SAT)
            config.write_text(
                "[node]\n"
                f'data_dir = "{node_dir}"\n'
                f'identity_key = "{node_dir / "identity.key"}"\n'
                "health_port = 0\n"
                "heartbeat_interval_s = 1\n"
                "[coordinator]\n"
                f'url = "127.0.0.1:{port}"\n'
                f'tls_fingerprint = "{pin}"\n'
                f'public_key = "{key}"\n'
                "[lightning]\n"
                f'node_uri = "{ln_pubkey}@127.0.0.1:9735"\n'
                f'treasury_uri = "{treasury}@127.0.0.1:9735"\n'
                'backend = "embedded"\n'  # the node's LN node signs its registration
                f'ledger_path = "{coord_dir / "lightning.sqlite3"}"\n'
                f'ledger_alias = "node-{name}"\n'
                "[tasks]\n"
                f"ask_msat = {ask}\n"
                f"types = {types}\n"
                "timeout_s = 60\n"
            )
            proc = Proc([str(BIN / "owm-node"), "start", "--config", str(config)], env, tmp_path)
            procs.append(proc)
            nodes[name] = {"proc": proc, "config": config, "dir": node_dir}
        for node in nodes.values():
            proc = node["proc"]
            assert isinstance(proc, Proc)
            node["health_port"] = int(
                proc.wait_line(r"health\s+http://127\.0\.0\.1:(\d+)/health", 60).group(1)
            )
            node["node_id"] = proc.wait_line(r"registered\s+node (\S+)", 60).group(1)
        channel = secure_channel(f"127.0.0.1:{port}", pin=pin)
        yield {"stub": pb_grpc.CoordinatorStub(channel), "nodes": nodes,
               "coordinator": coordinator, "coordinator_key": key}
        channel.close()
    finally:
        for proc in procs:
            proc.kill()


def submit(network: dict[str, Any], task_id: str, task_type: str, schema: str,
           payload: dict[str, object]) -> None:
    request = TaskRequest(
        task_id=task_id, task_type=task_type, input_schema_id=schema, input_schema_version=1,
        min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False,
        max_price_msat=10_000,
    )
    signed = signed_submit_request(OPERATOR, request, json.dumps(payload).encode(),
                                   coordinator_key=network["coordinator_key"])  # fmt: skip
    network["stub"].SubmitTask(signed, timeout=10)


def settled_by(stub: pb_grpc.CoordinatorStub, task_id: str) -> str:
    view = stub.GetTask(pb.GetTaskRequest(task_id=task_id), timeout=10)
    if view.outcome != "verified":
        return ""
    return next(r.node_id for r in view.replicas if r.state == "settled")


def earnings_of(config: Path) -> tuple[int, int]:
    result = subprocess.run(
        [str(BIN / "owm-node"), "earnings", "--config", str(config)],
        env=base_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"credited\s+\d+ sat \((\d+) msat\) for (\d+) tasks", result.stdout)
    assert found, result.stdout
    return int(found.group(1)), int(found.group(2))


def test_two_nodes_register_heartbeat_earn_and_a_killed_node_loses_no_task(network):
    stub = network["stub"]
    a, b = network["nodes"]["a"], network["nodes"]["b"]

    # Both registered, heartbeat and serve (SRS-NODE-04/08).
    for node in (a, b):
        poll(lambda node=node: health(node["health_port"])["coordinator"]["node_status"]
             == "online", 30, "a heartbeat")
        poll(lambda node=node: health(node["health_port"])["coordinator"]["task_stream_open"],
             30, "the task stream")
        doc = health(node["health_port"])
        assert doc["state"] == "serving" and doc["tier"] == "t1"
        assert doc["coordinator"]["connected"] is True

    # A asks less and wins inference; only B serves gradient aggregation.
    submit(network, "inf-1", "inference", "owm.inference.text", {"prompt": "hello owm"})
    submit(network, "agg-1", "gradient_aggregation", "owm.fl.aggregate",
           {"rule": "median", "f": 1, "updates": [[1.0, 2.0], [1.5, 2.5], [9.0, -9.0]]})
    assert poll(lambda: settled_by(stub, "inf-1"), 30, "inf-1 settled") == a["node_id"]
    assert poll(lambda: settled_by(stub, "agg-1"), 30, "agg-1 settled") == b["node_id"]

    # Training goes to A; A dies mid-task; the assignment times out and B completes it.
    submit(network, "train-1", "fl_training", "owm.fl.train",
           {"sub_model": "owm-base", "round": 1, "partition_id": 3, "epochs": 2, "lr": 0.1,
            "batch_size": 16, "seed": 7})
    poll(lambda: any(t["task_id"] == "train-1:0"
                     for t in health(a["health_port"])["current_tasks"]), 20, "A running train-1")
    os.kill(a["proc"].popen.pid, signal.SIGKILL)
    a["proc"].popen.wait(10)
    assert poll(lambda: settled_by(stub, "train-1"), ASSIGNMENT_TIMEOUT_S + 40,
                "train-1 completed elsewhere") == b["node_id"]

    # Earnings, from each node's own task log (SRS-NODE-06).
    msat_a, tasks_a = earnings_of(a["config"])
    assert tasks_a == 1 and msat_a > 0
    assert poll(lambda: earnings_of(b["config"])[1] == 2, 20, "B credited twice")

    # SIGTERM drains and exits 0 (SRS-NODE-09).
    b["proc"].popen.send_signal(signal.SIGTERM)
    assert b["proc"].popen.wait(30) == 0
    assert "draining" in b["proc"].output()
