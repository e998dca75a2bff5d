"""What a node's GPUs are, as the vendors' tools report them (SRS-NODE-03).

The probes that read them implement :class:`owm_core.ports.gpu.GpuProbe`; the domain
classifies them into a tier with :func:`owm_core.nodes.tiers.classify`.
"""

from __future__ import annotations

import enum

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
