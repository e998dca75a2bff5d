"""Tasks run in isolated subprocesses with a timeout, a memory limit and CUDA MPS limits."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from owm_adapters.models.tinynet import genesis_weights
from owm_adapters.node.task_exec import run_inference
from owm_adapters.node.task_runner import Limits, TaskRunner, cuda_mps_environment
from owm_core.market.task_types import output_hash
from owm_core.nodes.hardware import DeviceVendor, GpuDevice

MISBEHAVING = "tests.node.misbehaving_worker"
GPU0 = GpuDevice(index=0, vendor=DeviceVendor.NVIDIA, name="NVIDIA H100", vram_mb=81_559)
GPU1 = GpuDevice(index=1, vendor=DeviceVendor.NVIDIA, name="NVIDIA H100", vram_mb=81_559)


def prompt(text: str) -> bytes:
    return json.dumps({"prompt": text}).encode()


def misbehaving(tmp_path: Path, **limits: float) -> TaskRunner:
    env = dict(os.environ, OWM_TEST_CHILD_PID_FILE=str(tmp_path / "child.pid"),
               ALL_PROXY="socks5://127.0.0.1:9050")
    return TaskRunner(limits=Limits(**limits), worker_module=MISBEHAVING, base_env=env)


def run(runner: TaskRunner, text: str):
    return runner.run("inference", "owm.inference.text", 1, prompt(text))


def test_an_inference_task_runs_in_a_subprocess_and_matches_the_in_process_answer():
    runner = TaskRunner(limits=Limits(timeout_s=60))
    result = run(runner, "hello owm")
    assert result.ok, result.error
    assert result.output == run_inference({"prompt": "hello owm"}, None)
    assert result.output["model_version"] == "genesis"
    assert output_hash(result.output) == output_hash(run_inference({"prompt": "hello owm"}, None))


def test_the_worker_revalidates_the_input_and_reports_the_field():
    result = TaskRunner(limits=Limits(timeout_s=60)).run(
        "inference", "owm.inference.text", 1, b'{"prompt": 5}'
    )
    assert not result.ok and "input.prompt" in result.error


def test_a_crashing_task_is_a_failed_result_not_an_exception(tmp_path):
    result = run(misbehaving(tmp_path, timeout_s=30), "crash")
    assert not result.ok and "SIGSEGV" in result.error


def test_a_worker_that_exits_without_a_result_or_prints_garbage_fails_cleanly(tmp_path):
    runner = misbehaving(tmp_path, timeout_s=30)
    assert "code 9" in run(runner, "exit").error
    assert "without a result" in run(runner, "garbage").error


def test_a_runaway_task_and_the_children_it_forked_are_killed_at_the_timeout(tmp_path):
    started = time.monotonic()
    result = run(misbehaving(tmp_path, timeout_s=1.5), "loop")
    assert result.timed_out and not result.ok and "timed out" in result.error
    assert time.monotonic() - started < 15
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        state = Path(f"/proc/{child}/stat").read_text().split()[2] if Path(
            f"/proc/{child}/stat").exists() else "Z"
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the forked child outlived the timeout")


def test_a_task_over_its_memory_limit_fails_without_touching_the_daemon(tmp_path):
    result = run(misbehaving(tmp_path, timeout_s=30, memory_mb=512), "hog")
    assert not result.ok and "memory limit of 512 MiB" in result.error


def test_a_cpu_only_machine_gets_no_cuda_mps_limits():
    assert cuda_mps_environment([], Limits()) == {}
    amd = GpuDevice(index=0, vendor=DeviceVendor.AMD, name="MI300X", vram_mb=196_592)
    assert cuda_mps_environment([amd], Limits()) == {}


def test_each_nvidia_gpu_gets_a_pinned_memory_limit_and_a_thread_share():
    env = cuda_mps_environment([GPU1, GPU0], Limits(gpu_thread_percentage=50))
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=73403M,1=73403M"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "50"
    capped = cuda_mps_environment([GPU0], Limits(gpu_memory_mb=8_000))
    assert capped["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=8000M"


def test_the_worker_of_a_gpu_node_runs_with_the_mps_limits_and_without_proxies(tmp_path):
    runner = misbehaving(tmp_path, timeout_s=30, gpu_memory_mb=4096)
    runner.gpus = (GPU0,)
    result = run(runner, "env")
    assert result.ok
    assert result.output == {
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=4096M",
        "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "100",
        "ALL_PROXY": None,
    }


def test_installed_weights_answer_instead_of_genesis(tmp_path):
    from owm_adapters.node.weights import CachedModelRuntime

    weights = {k: v * 2 for k, v in genesis_weights("owm-geo").items()}
    CachedModelRuntime(tmp_path).load("owm-geo", "owm-v0.1.0", weights)
    runner = TaskRunner(limits=Limits(timeout_s=60), model_dir=str(tmp_path))
    result = runner.run("inference", "owm.inference.features", 1, json.dumps(
        {"sub_model": "owm-geo", "features": [[0.5] * 32]}).encode())
    assert result.ok and result.output["model_version"] == "owm-v0.1.0"


def test_a_spare_worker_waits_ready_serves_exactly_one_task_and_is_replaced():
    runner = TaskRunner(limits=Limits(timeout_s=60, memory_mb=2048), keep_spare=True)
    try:
        first = run(runner, "warm up")
        spare = runner._spare
        assert first.ok and spare is not None and spare.poll() is None
        time.sleep(0.5)  # let the spare finish importing, as between two real tasks

        second = run(runner, "hello owm")

        assert second.ok and second.output == run_inference({"prompt": "hello owm"}, None)
        assert spare.poll() == 0  # the spare ran the second task and exited
        assert runner._spare is not None and runner._spare is not spare
    finally:
        runner.close()
    assert runner._spare is None


def test_a_spare_that_died_waiting_is_replaced_by_a_fresh_worker():
    runner = TaskRunner(limits=Limits(timeout_s=60), keep_spare=True)
    try:
        run(runner, "start a spare")
        dead = runner._spare
        assert dead is not None
        os.killpg(dead.pid, 9)
        dead.wait()

        result = run(runner, "still answered")

        assert result.ok, result.error
    finally:
        runner.close()


def test_without_keep_spare_no_worker_waits_between_tasks():
    runner = TaskRunner(limits=Limits(timeout_s=60))
    assert run(runner, "one").ok
    assert runner._spare is None
