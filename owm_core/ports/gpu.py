"""The hardware probe port: what a node has to offer (SRS-NODE-03).

Adapters read ``nvidia-smi`` / ``rocm-smi`` output and the operating system's memory figures;
the domain classifies the result into a tier with :func:`owm_core.nodes.tiers.classify`.
"""

from __future__ import annotations

import enum
from typing import Protocol

import attrs

from owm_core import fields


class DeviceVendor(enum.Enum):
    """Who made a GPU; decides which probe and which runtime (CUDA, ROCm) apply."""

    NVIDIA = "nvidia"
    AMD = "amd"


@attrs.frozen
class GpuDevice:
    """One GPU as reported by its vendor's tool."""

    index: int = attrs.field(validator=fields.integer(minimum=0))
    vendor: DeviceVendor = attrs.field(validator=fields.instance_of(DeviceVendor))
    name: str = attrs.field(validator=fields.text(max_len=200))
    vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    driver: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=100))


class GpuProbe(Protocol):
    """Finds the GPUs of this machine."""

    def devices(self) -> list[GpuDevice]:
        """All usable GPUs; an empty list on a CPU-only machine (never an error for 'no GPU')."""
        ...


class HostProbe(Protocol):
    """Reads the non-GPU resources of this machine."""

    def ram_mb(self) -> int:
        """Total physical memory in MiB."""
        ...

    def bandwidth_mbps(self) -> int:
        """Configured or measured network bandwidth estimate in Mbit/s (SRS-NODE-04)."""
        ...
