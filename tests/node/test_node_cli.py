"""`owm-node hardware | tasks | earnings | start`: the operator's view (SRS-NODE-01/03/06)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.node import detect_hardware
from owm_adapters.bootstrap.node_status import node_status
from owm_adapters.bootstrap.settings import load_node_settings
from owm_adapters.gpu import FixedGpuProbe, FixedHostProbe
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.node.task_log import TaskLog
from owm_adapters.storage import keystore
from owm_cli import node
from owm_core.nodes.control_plane import StakeView
from owm_core.nodes.hardware import DeviceVendor, GpuDevice
from owm_core.nodes.tiers import Tier

A100 = GpuDevice(index=0, vendor=DeviceVendor.NVIDIA, name="NVIDIA A100-SXM4-40GB", vram_mb=40_536)


def test_a_cpu_only_machine_is_t1_with_no_gpu_in_its_manifest():
    report = detect_hardware(100, FixedGpuProbe([]), FixedHostProbe(ram=16_000,
                                                                     bandwidth=100))
    manifest = report.manifest()
    assert report.tier is Tier.T1 and report.devices == ()
    assert (manifest.gpu_vendor, manifest.gpu_count, manifest.vram_mb) == ("none", 0, 0)


def test_two_datacenter_gpus_classify_as_t3_and_are_published_in_the_manifest():
    second = GpuDevice(index=1, vendor=DeviceVendor.NVIDIA, name="NVIDIA A100", vram_mb=40_536)
    report = detect_hardware(1000, FixedGpuProbe([A100, second]),
                             FixedHostProbe(ram=256_000, bandwidth=1000))
    manifest = report.manifest()
    assert report.tier is Tier.T3
    assert (manifest.gpu_vendor, manifest.gpu_count, manifest.vram_mb) == ("nvidia", 2, 81_072)


def test_a_machine_below_the_t1_minimum_cannot_build_a_manifest():
    report = detect_hardware(100, FixedGpuProbe([]), FixedHostProbe(ram=2_000,
                                                                    bandwidth=100))
    assert report.tier is None and "ram_mb" in report.below_minimum


def test_hardware_prints_the_tier_of_this_machine(tmp_path: Path):
    result = CliRunner().invoke(node.cli, ["hardware", "--config", str(tmp_path / "none.toml")])
    assert result.exit_code == 0, result.output
    assert "tier       t" in result.output and "ram        " in result.output


PINS = f'[coordinator]\ntls_fingerprint = "{"ab" * 32}"\npublic_key = "{"cd" * 32}"\n'
"""What `owm-coordinator init` printed, as an operator pastes it into owm.toml."""


def _config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "owm.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path}"\nidentity_key = "{tmp_path}/id.key"\n'
                      + extra)
    return config


def test_tasks_and_earnings_read_the_task_log(tmp_path: Path):
    log = TaskLog.in_dir(tmp_path)
    log.record_received("job-1:0", "inference", "owm.inference.text", 1, "ab" * 32, 10, 2_500,
                        0, 1)
    log.mark_proved("job-1:0", "settled", "credited")
    log.record_received("bad-1:0", "inference", "owm.inference.text", 1, "cd" * 32, 10, 2_500,
                        0, 2)
    log.mark_rejected("bad-1:0", "input.prompt: must be a string", 3)
    log.close()
    config = _config(tmp_path)
    tasks = CliRunner().invoke(node.cli, ["tasks", "--config", str(config)])
    assert tasks.exit_code == 0, tasks.output
    assert "job-1:0" in tasks.output and "credited" in tasks.output
    assert "input.prompt: must be a string" in tasks.output
    earned = CliRunner().invoke(node.cli, ["earnings", "--config", str(config)])
    assert "credited   2 sat (2500 msat) for 1 tasks" in earned.output
    assert "rejected 1 invalid tasks" in earned.output


def test_earnings_of_a_fresh_node_are_zero(tmp_path: Path):
    result = CliRunner().invoke(node.cli, ["earnings", "--config", str(_config(tmp_path))])
    assert result.exit_code == 0 and "credited   0 sat" in result.output


def test_start_without_a_lightning_uri_explains_what_to_set(tmp_path: Path, monkeypatch):
    """The daemon will not start, so never registers, without a Lightning URI to be paid at
    (SRS-LN-02), and says which setting is missing."""
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    init = CliRunner().invoke(node.cli, ["init", "--config", str(tmp_path / "init.toml"),
                                         "--data-dir", str(tmp_path)])
    assert init.exit_code == 0, init.output
    config = _config(tmp_path, "health_port = 0\n" + PINS)
    (tmp_path / "identity.key").rename(tmp_path / "id.key")
    result = CliRunner().invoke(node.cli, ["start", "--config", str(config)])
    assert result.exit_code == 2
    assert "[lightning] node_uri is empty" in result.output


@pytest.mark.parametrize(
    ("value", "said"),
    [("", "[coordinator] public_key is empty"), ("xyz", "coordinator.public_key: must be 64")],
)
def test_start_without_the_coordinators_public_key_explains_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, said: str
) -> None:
    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    from owm_adapters.storage import keystore

    keystore.create_identity(tmp_path / "id.key")
    config = _config(tmp_path, "health_port = 0\n"
                               f'[coordinator]\npublic_key = "{value}"\n'
                               f'tls_fingerprint = "{"ab" * 32}"\n'
                               f'[lightning]\nnode_uri = "{"02" + "11" * 32}@127.0.0.1:9735"\n')
    result = CliRunner().invoke(node.cli, ["start", "--config", str(config)])
    assert result.exit_code == 2
    assert said in result.output


def test_start_without_the_coordinators_pin_explains_what_to_set(tmp_path: Path, monkeypatch):
    from owm_adapters.storage import keystore

    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    keystore.create_identity(tmp_path / "id.key")
    result = CliRunner().invoke(node.cli, ["start", "--config", str(_config(tmp_path))])
    assert result.exit_code == 2
    assert "[coordinator] tls_fingerprint is empty" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_first_start_creates_the_nodes_tls_certificate_bound_to_its_identity(
    tmp_path: Path, monkeypatch
):
    import stat

    from owm_adapters.bootstrap.node import client_tls, load_node_identity
    from owm_adapters.bootstrap.settings import load_node_settings
    from owm_adapters.control_plane.tls import verify_peer_certificate
    from owm_adapters.storage import keystore

    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    identity = keystore.create_identity(tmp_path / "id.key")
    settings = load_node_settings(_config(tmp_path, PINS))
    tls = client_tls(settings, load_node_identity(settings), 1_800_000_000)
    assert tls.coordinator_fingerprint == "ab" * 32
    for name in ("tls.key", "tls.crt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    verify_peer_certificate(tls.credentials.certificate_pem, identity.public_key_hex)
    again = client_tls(settings, identity, 1_800_000_100)
    assert again.credentials == tls.credentials  # kept while valid
    renewed = client_tls(settings, identity, 1_800_000_000 + 360 * 86_400)
    assert renewed.credentials != tls.credentials  # re-issued before it expires


def test_a_node_without_a_lightning_backend_refuses_to_start_naming_the_setting(
    tmp_path, monkeypatch
):
    """Registration needs the Lightning node's signature (SRS-STAKE-01): say so at start."""
    from owm_adapters.bootstrap.node import build_node
    from owm_adapters.bootstrap.settings import ConfigError, load_node_settings
    from owm_adapters.control_plane.in_process import InProcessControlPlane
    from owm_adapters.storage import keystore

    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    keystore.create_identity(tmp_path / "id.key")
    config = _config(tmp_path, "health_port = 0\n"
                               f'[lightning]\nnode_uri = "{"02" + "11" * 32}@127.0.0.1:9735"\n'
                               + PINS)
    report = detect_hardware(1000, FixedGpuProbe([]), FixedHostProbe(ram=16_000, bandwidth=100))
    with pytest.raises(ConfigError, match=r"\[lightning\] backend is \"none\""):
        build_node(load_node_settings(config), InProcessControlPlane(None),  # type: ignore[arg-type]
                   report=report, say=lambda _line: None)


def test_a_node_built_for_a_gpu_machine_gives_its_tasks_cuda_mps_limits(tmp_path, monkeypatch):
    from owm_adapters.bootstrap.node import build_node
    from owm_adapters.bootstrap.settings import load_node_settings
    from owm_adapters.control_plane.in_process import InProcessControlPlane
    from owm_adapters.storage import keystore

    monkeypatch.delenv("OWM_IDENTITY_KEY_PATH", raising=False)
    keystore.create_identity(tmp_path / "id.key")
    ledger = tmp_path / "ln.sqlite3"
    pubkey = SimLedger(ledger).add_node("gpu-node")
    config = _config(tmp_path, "health_port = 0\n"
                               f'[lightning]\nnode_uri = "{pubkey}@127.0.0.1:9735"\n'
                               f'backend = "embedded"\nledger_path = "{ledger}"\n'
                               'ledger_alias = "gpu-node"\n' + PINS
                               + "[tasks]\ngpu_memory_mb = 20000\ngpu_thread_percentage = 40\n")
    report = detect_hardware(1000, FixedGpuProbe([A100]),
                             FixedHostProbe(ram=128_000, bandwidth=1000))
    built = build_node(load_node_settings(config), InProcessControlPlane(None),  # type: ignore[arg-type]
                       report=report, say=lambda _line: None)
    with built.running() as node:
        daemon = node.daemon
        env = daemon.runner.environment()
        assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=20000M"
        assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "40"
        assert daemon.manifest.tier is Tier.T3 and daemon.manifest.gpu_vendor == "nvidia"
        assert daemon.health()["hardware"]["gpus"][0]["name"] == "NVIDIA A100-SXM4-40GB"
        assert node.health.host == "127.0.0.1" and node.health.port > 0
        assert not node.via_proxy


def _json(args: list[str]) -> dict:
    result = CliRunner().invoke(node.cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_tasks_earnings_and_hardware_with_json_print_the_same_figures_as_the_text(tmp_path):
    log = TaskLog.in_dir(tmp_path)
    log.record_received("job-1:0", "inference", "owm.inference.text", 1, "ab" * 32, 10, 2_500,
                        0, 1)
    log.mark_proved("job-1:0", "settled", "credited")
    log.close()
    config = ["--config", str(_config(tmp_path))]
    tasks = _json(["tasks", *config])["tasks"]
    assert [(t["replica_id"], t["price_msat"], t["payment_status"]) for t in tasks] == [
        ("job-1:0", 2_500, "credited")]
    earned = _json(["earnings", *config])
    text = CliRunner().invoke(node.cli, ["earnings", *config]).output
    assert earned["credited_msat"] == 2_500 and earned["credited_tasks"] == 1
    assert f"({earned['credited_msat']} msat) for {earned['credited_tasks']} tasks" in text
    hardware = _json(["hardware", *config])
    text = CliRunner().invoke(node.cli, ["hardware", *config]).output
    assert f"ram        {hardware['hardware']['ram_mb']} MiB" in text
    assert hardware["tier"] is None or f"tier       {hardware['tier']}" in text


def test_status_of_a_node_whose_coordinator_is_down_says_unreachable_and_exits_0(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    keystore.create_identity(tmp_path / "id.key")
    config = _config(tmp_path, PINS + f'url = "127.0.0.1:{port}"\n')
    result = CliRunner().invoke(node.cli, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "coordinator unreachable" in result.output
    report = _json(["status", "--config", str(config)])
    assert report["coordinator"]["reachable"] is False
    assert report["coordinator"]["url"] == f"127.0.0.1:{port}"
    assert report["coordinator"]["tls_fingerprint"] == "ab" * 32
    assert report["identity"]["node_id"] in result.output


def test_status_shows_the_stake_the_coordinator_reports(tmp_path):
    identity = keystore.create_identity(tmp_path / "id.key")
    view = StakeView(status="active", tier="t2", required_sats=500_000, capacity_sat=600_000,
                     channel_point="ab" * 32 + ":0", cooldown_until=0)

    class Coordinator:
        def stake_status(self, public_key: str) -> StakeView:
            assert public_key == identity.public_key_hex
            return view

    settings = load_node_settings(_config(tmp_path, PINS))
    report = node_status(settings, control=Coordinator())  # type: ignore[arg-type]
    assert report["coordinator"]["reachable"] is True
    assert report["coordinator"]["stake"]["capacity_sat"] == 600_000
    assert report["identity"]["node_id"] == identity.node_id
    assert "active tier t2, 600000 of 500000 sat" in "\n".join(node._status_lines(report))


def test_status_before_init_says_there_is_no_identity(tmp_path):
    result = CliRunner().invoke(node.cli, ["status", "--config", str(_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "no identity yet" in result.output
