"""Runs tasks in isolated Python subprocesses with limits (SRS-NODE-05).

Each task gets a fresh ``python -m owm_adapters.node.task_worker`` in its own session
(process group), fed its request on stdin:

* **memory** — the worker caps its own address space with ``RLIMIT_AS`` before importing
  anything (``memory_mb``); exceeding it fails the task, not the daemon;
* **time** — after ``timeout_s`` of wall-clock time the whole process group is killed
  (``SIGKILL``), so a runaway task and any children it forked are gone;
* **GPU memory** — when GPUs are present the worker's environment carries CUDA MPS client
  limits: ``CUDA_MPS_PINNED_DEVICE_MEM_LIMIT`` (``"0=2048M,1=2048M"``: per-device pinned memory
  cap) and ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` (share of SMs). They take effect when the
  operator runs the MPS control daemon (``nvidia-cuda-mps-control -d``); see docs/node-setup.md.

A crashing worker (segfault, ``os._exit``, garbage on stdout) becomes a failed
:class:`RunResult`; nothing here raises for a misbehaving task.

With ``keep_spare`` (the daemon's setting) the next worker is started while the current task
runs: it applies its limits, imports the task code and waits for its request on stdin, so a
task does not wait for an interpreter to start (~0.15-1 s; it matters on the query path,
SRS-PERF-01). Every task still gets a fresh process: a spare serves exactly one task.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from owm_core.nodes.hardware import DeviceVendor, GpuDevice

WORKER_MODULE = "owm_adapters.node.task_worker"
MPS_MEM_LIMIT = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
MPS_THREAD_PERCENTAGE = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
MAX_OUTPUT_BYTES = 64 * 1024 * 1024


@attrs.frozen
class Limits:
    """The limits one task runs under (from ``[tasks]`` in owm.toml).

    ``gpu_memory_mb`` 0 means "90 % of each GPU's VRAM"; ``gpu_thread_percentage`` is the
    share of each GPU's streaming multiprocessors a task may use.
    """

    timeout_s: float = 600.0
    memory_mb: int = 4096
    gpu_memory_mb: int = 0
    gpu_thread_percentage: int = 100


@attrs.frozen
class RunResult:
    """How one task run ended: its output, or why it failed."""

    ok: bool
    output: dict[str, Any] | None
    error: str
    execution_ms: int
    exit_code: int | None
    timed_out: bool = False


def cuda_mps_environment(gpus: Sequence[GpuDevice], limits: Limits) -> dict[str, str]:
    """The CUDA MPS client variables that cap a task's GPU use (SRS-NODE-05); {} without an
    NVIDIA GPU."""
    nvidia = [g for g in gpus if g.vendor is DeviceVendor.NVIDIA]
    if not nvidia:
        return {}
    parts = []
    for gpu in sorted(nvidia, key=lambda g: g.index):
        cap = limits.gpu_memory_mb or max(1, gpu.vram_mb * 9 // 10)
        parts.append(f"{gpu.index}={min(cap, gpu.vram_mb) if gpu.vram_mb else cap}M")
    return {
        MPS_MEM_LIMIT: ",".join(parts),
        MPS_THREAD_PERCENTAGE: str(max(1, min(100, limits.gpu_thread_percentage))),
    }


def _devices(value: Iterable[GpuDevice]) -> tuple[GpuDevice, ...]:
    return tuple(value)


@attrs.define
class TaskRunner:
    """Starts one isolated worker per task (module docstring)."""

    limits: Limits = attrs.field(factory=Limits)
    gpus: tuple[GpuDevice, ...] = attrs.field(default=(), converter=_devices)
    model_dir: str = ""
    python: str = sys.executable
    worker_module: str = WORKER_MODULE
    base_env: Mapping[str, str] | None = None
    keep_spare: bool = False
    _spare: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _spare_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def environment(self) -> dict[str, str]:
        """The worker's environment: the daemon's, minus proxies, plus the MPS limits."""
        env = dict(os.environ if self.base_env is None else self.base_env)
        for name in ("ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
            env.pop(name, None)
        env.update(cuda_mps_environment(self.gpus, self.limits))
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def command(self) -> list[str]:
        """The worker's command line."""
        return [
            self.python,
            "-m",
            self.worker_module,
            "--memory-mb",
            str(self.limits.memory_mb),
            "--model-dir",
            self.model_dir,
        ]

    def run(
        self, task_type: str, schema_id: str, version: int, raw_input: bytes,
        model_version: str = "",
    ) -> RunResult:
        """Run one task to completion, failure or timeout; never raises for the task's sake.
        ``model_version`` is the sub-model version the assignment pins (empty: none)."""
        request = json.dumps(
            {
                "task_type": task_type,
                "schema_id": schema_id,
                "version": version,
                "input": raw_input.decode("utf-8", errors="replace"),
                "model_version": model_version,
            }
        ).encode("utf-8")
        started = time.monotonic()
        try:
            proc = self._worker()
        except OSError as exc:
            return RunResult(False, None, f"cannot start the task worker: {exc}", 0, None)
        timed_out = False
        try:
            stdout, stderr = proc.communicate(request, timeout=self.limits.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            stdout, stderr = proc.communicate()
        elapsed_ms = int((time.monotonic() - started) * 1000)
        if timed_out:
            return RunResult(
                False, None, f"timed out after {self.limits.timeout_s:g} s; killed",
                elapsed_ms, proc.returncode, timed_out=True,
            )
        return _result_of(proc.returncode, stdout, stderr, elapsed_ms)


    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            self.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environment(),
            start_new_session=True,
        )

    def _worker(self) -> subprocess.Popen[bytes]:
        """The waiting spare if it is still alive, else a new worker; then a new spare."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is not None:
            spare.communicate()  # it died waiting (e.g. killed with its parent thread): reap
            spare = None
        proc = spare if spare is not None else self._spawn()
        if self.keep_spare:
            with contextlib.suppress(OSError), self._spare_lock:
                if self._spare is None:
                    self._spare = self._spawn()
        return proc

    def close(self) -> None:
        """Stop the waiting spare worker, if any (the daemon calls this when it exits)."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            _kill_group(spare)
            spare.communicate()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _result_of(code: int, stdout: bytes, stderr: bytes, elapsed_ms: int) -> RunResult:
    line = stdout[:MAX_OUTPUT_BYTES].strip().splitlines()[-1:] if stdout else []
    reply: Any = None
    if line:
        try:
            reply = json.loads(line[0])
        except ValueError:
            reply = None
    if isinstance(reply, dict) and reply.get("ok") is True and isinstance(
        reply.get("output"), dict
    ):
        return RunResult(True, reply["output"], "", elapsed_ms, code)
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return RunResult(False, None, reply["error"], elapsed_ms, code)
    if code < 0:
        reason = f"worker died from signal {signal.Signals(-code).name}"
    else:
        reason = f"worker exited with code {code} without a result"
    tail = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:]
    return RunResult(False, None, reason + (f" ({tail[0][:200]})" if tail else ""), elapsed_ms,
                     code)
