"""Builds a node daemon from ``owm.toml`` (the node's composition root).

Reads the settings (with the spec's environment overrides, §10.3: ``OWM_COORDINATOR_URL``,
``OWM_IDENTITY_KEY_PATH``, ``OWM_MODEL_CACHE_DIR``, ``OWM_LOG_LEVEL``), probes the hardware
(``nvidia-smi`` / ``rocm-smi`` and ``/proc/meminfo``; SRS-NODE-03), classifies the tier,
and wires the task runner, the task log and the daemon. The control plane is passed in — the
gRPC client lives in ``owm_server.node_link`` and tests pass the in-process twin — so this
module never imports a shell.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import attrs

from owm_adapters import keystore
from owm_adapters.gpu import LinuxHostProbe, SystemGpuProbe
from owm_adapters.node_daemon.daemon import DaemonSettings, NodeDaemon
from owm_adapters.node_daemon.task_log import TaskLog
from owm_adapters.node_daemon.task_runner import Limits, TaskRunner
from owm_adapters.node_daemon.weights import model_cache_dir
from owm_adapters.settings import ConfigError, NodeSettings
from owm_adapters.system_clock import SystemClock
from owm_core import task_types
from owm_core.envelopes import CapabilityManifest
from owm_core.errors import DomainError
from owm_core.identity import Identity
from owm_core.ports.control_plane import ControlPlane
from owm_core.ports.gpu import GpuDevice, GpuProbe, HostProbe
from owm_core.registry import LnNodeUri
from owm_core.tiers import Hardware, Tier, classify

COORDINATOR_URL_ENV = "OWM_COORDINATOR_URL"
LOG_LEVEL_ENV = "OWM_LOG_LEVEL"


@attrs.frozen
class HardwareReport:
    """What this machine offers, its tier, and why GPUs may be missing (SRS-NODE-03)."""

    devices: tuple[GpuDevice, ...]
    hardware: Hardware
    tier: Tier | None
    problems: tuple[str, ...]
    below_minimum: str = ""

    def manifest(self) -> CapabilityManifest:
        """The capability manifest the node signs and publishes (SRS-NODE-04)."""
        if self.tier is None:
            raise ConfigError(f"this machine cannot join: {self.below_minimum}")
        return CapabilityManifest(
            tier=self.tier,
            vram_mb=self.hardware.vram_mb,
            ram_mb=max(1, self.hardware.ram_mb),
            bandwidth_mbps=self.hardware.bandwidth_mbps,
            gpu_vendor=self.hardware.gpu_vendor.value,
            gpu_count=self.hardware.gpu_count,
        )

    def summary(self) -> dict[str, object]:
        """The hardware part of ``/health`` and ``owm-node hardware``."""
        return {
            "tier": self.tier.value if self.tier is not None else None,
            "gpus": [
                {"index": d.index, "vendor": d.vendor.value, "name": d.name, "vram_mb": d.vram_mb}
                for d in self.devices
            ],
            "ram_mb": self.hardware.ram_mb,
            "bandwidth_mbps": self.hardware.bandwidth_mbps,
            "problems": list(self.problems),
        }


def detect_hardware(
    bandwidth_mbps: int, gpu_probe: GpuProbe | None = None, host_probe: HostProbe | None = None
) -> HardwareReport:
    """Probe GPUs and host, classify the tier; a CPU-only machine is t1 with no GPU."""
    probe = gpu_probe if gpu_probe is not None else SystemGpuProbe()
    host = host_probe if host_probe is not None else LinuxHostProbe(bandwidth_mbps)
    devices = tuple(probe.devices())
    problems = tuple(str(p) for p in getattr(probe, "problems", ()))
    hardware = Hardware.from_devices(devices, host.ram_mb(), host.bandwidth_mbps())
    try:
        return HardwareReport(devices, hardware, classify(hardware), problems)
    except DomainError as exc:
        return HardwareReport(devices, hardware, None, problems, exc.message)


def coordinator_url(settings: NodeSettings) -> str:
    """``$OWM_COORDINATOR_URL``, else ``[coordinator] url``."""
    return os.environ.get(COORDINATOR_URL_ENV) or settings.coordinator.url


def data_dir(settings: NodeSettings) -> Path:
    """The node's state directory (created, mode 0700)."""
    path = Path(settings.node.data_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def configure_logging() -> None:
    """Logging to stderr at ``$OWM_LOG_LEVEL`` (default INFO)."""
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(level=getattr(logging, level, logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_node_identity(settings: NodeSettings) -> Identity:
    """The node's identity from ``$OWM_IDENTITY_KEY_PATH`` or ``[node] identity_key``."""
    return keystore.load_identity(keystore.default_key_path(settings.node.identity_key))


def daemon_settings(settings: NodeSettings) -> DaemonSettings:
    """The daemon's behaviour from owm.toml; a missing Lightning URI is a config error."""
    uri = settings.lightning.node_uri
    if not uri:
        raise ConfigError(
            "[lightning] node_uri is empty: set your Lightning node's pubkey@host:port; rewards "
            "are paid there and your stake channel is opened from it (SRS-LN-02)"
        )
    try:
        LnNodeUri.parse(uri)
    except DomainError as exc:
        raise ConfigError(f"lightning.node_uri: {exc.message}") from None
    return DaemonSettings(
        ln_node_uri=uri,
        onion_address=settings.node.onion_address or None,
        treasury_uri=settings.lightning.treasury_uri,
        heartbeat_interval_s=float(settings.node.heartbeat_interval_s),
        ask_msat=settings.tasks.ask_msat,
        max_concurrent_tasks=max(1, settings.tasks.max_concurrent),
        capabilities=serves(settings.tasks.types),
    )


def serves(types: list[str]) -> tuple[str, ...]:
    """The task types to advertise; ConfigError for one that is not built in."""
    known = set(task_types.capabilities())
    unknown = sorted(set(types) - known)
    if unknown or not types:
        raise ConfigError(
            f"tasks.types: {', '.join(unknown) or 'empty'}; choose from {', '.join(sorted(known))}"
        )
    return tuple(sorted(set(types)))


def build_daemon(
    settings: NodeSettings,
    control: ControlPlane,
    *,
    report: HardwareReport | None = None,
    say: Callable[[str], None] = print,
    via_proxy: bool = False,
) -> NodeDaemon:
    """The node daemon for ``settings`` talking to ``control`` (not started)."""
    identity = load_node_identity(settings)
    behaviour = daemon_settings(settings)
    hw = report if report is not None else detect_hardware(settings.node.bandwidth_mbps)
    manifest = hw.manifest()
    state_dir = data_dir(settings)
    tasks = settings.tasks
    runner = TaskRunner(
        limits=Limits(
            timeout_s=float(tasks.timeout_s),
            memory_mb=tasks.memory_mb,
            gpu_memory_mb=tasks.gpu_memory_mb,
            gpu_thread_percentage=tasks.gpu_thread_percentage,
        ),
        gpus=hw.devices,
        model_dir=str(model_cache_dir(settings.node.model_cache_dir, str(state_dir))),
    )
    return NodeDaemon(
        identity,
        control,
        manifest,
        runner,
        TaskLog.in_dir(state_dir),
        SystemClock(),
        behaviour,
        data_dir=state_dir,
        say=say,
        hardware=hw.summary(),
        coordinator_url=coordinator_url(settings),
        via_proxy=via_proxy,
    )
