"""Hardware tiers t1/t2/t3 and what each tier must stake (SRS-NODE-03, SRS-STAKE-01).

Owns the :class:`Hardware` a node offers, the :class:`TierThresholds` that sort hardware into
tiers, :func:`classify`, and the per-tier stake minimums (:class:`StakeRequirements`).

Tiers grow with the machine: t1 is the entry tier (a consumer GPU or a CPU-only machine), t2 a
prosumer box, t3 a datacenter node. Higher tiers get the bigger tasks and lock more stake, and
slashing them needs maintainer acknowledgments (SRS-STAKE-04, SRS-SEC-14).

Units: memory in MiB as the driver and the operating system report it (``vram_mb``, ``ram_mb``),
bandwidth in Mbit/s, stake in satoshis.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import DomainError, InvalidValue
from owm_core.nodes.hardware import GpuDevice


class Tier(enum.Enum):
    """A node's hardware class: t1 entry (consumer GPU or CPU), t2 prosumer, t3 datacenter."""

    T1 = "t1"
    T2 = "t2"
    T3 = "t3"

    @property
    def rank(self) -> int:
        """1, 2 or 3: tiers compare by rank (t1 < t2 < t3)."""
        return _RANK[self]


_RANK = {Tier.T1: 1, Tier.T2: 2, Tier.T3: 3}


class GpuVendor(enum.Enum):
    """Who made the machine's GPUs; ``none`` for a CPU-only machine, ``other`` for the rest.

    ``other`` also covers a machine that mixes vendors (SRS-NODE-03 probes NVIDIA and AMD).
    """

    NONE = "none"
    NVIDIA = "nvidia"
    AMD = "amd"
    OTHER = "other"


class HardwareBelowMinimum(DomainError):
    """The hardware misses the entry tier's minimum, so the node cannot join (SRS-NODE-03).

    ``shortfalls`` names each resource that is short, e.g. ``("ram_mb", "bandwidth_mbps")``.
    """

    code = "hardware-below-minimum"

    def __init__(self, message: str, shortfalls: tuple[str, ...]) -> None:
        super().__init__(message)
        self.shortfalls = shortfalls


def _int_tuple(value: Any) -> Any:
    """Lists become tuples so that a frozen value stays immutable; anything else is validated."""
    return tuple(value) if isinstance(value, list) else value


def _per_gpu_vram(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise InvalidValue(attribute.name, f"must be a sequence of MiB, got {type(value).__name__}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise InvalidValue(attribute.name, f"every entry must be an integer ≥ 0, got {item!r}")


@attrs.frozen
class Hardware:
    """What a node offers (SRS-NODE-03, SRS-NODE-04 capability manifest).

    ``vram_mb`` is the total over all GPUs; ``gpu_vram_mb`` optionally lists each GPU (its
    length is then ``gpu_count`` and its sum ``vram_mb``). A CPU-only machine has vendor
    ``none``, no GPUs and no VRAM.
    """

    vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    ram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    bandwidth_mbps: int = attrs.field(validator=fields.integer(minimum=0))
    gpu_vendor: GpuVendor = attrs.field(
        default=GpuVendor.NONE, validator=fields.instance_of(GpuVendor)
    )
    gpu_count: int = attrs.field(default=0, validator=fields.integer(minimum=0, maximum=1024))
    gpu_vram_mb: tuple[int, ...] = attrs.field(
        default=(), converter=_int_tuple, validator=_per_gpu_vram
    )

    def __attrs_post_init__(self) -> None:
        if self.gpu_vendor is GpuVendor.NONE:
            if self.gpu_count != 0:
                raise InvalidValue("gpu_count", "must be 0 when gpu_vendor is none")
            if self.vram_mb != 0:
                raise InvalidValue("vram_mb", "must be 0 when gpu_vendor is none")
        elif self.gpu_count == 0:
            raise InvalidValue(
                "gpu_count", f"must be ≥ 1 when gpu_vendor is {self.gpu_vendor.value}"
            )
        if self.gpu_vram_mb:
            if len(self.gpu_vram_mb) != self.gpu_count:
                raise InvalidValue(
                    "gpu_vram_mb", f"has {len(self.gpu_vram_mb)} entries for {self.gpu_count} GPUs"
                )
            if sum(self.gpu_vram_mb) != self.vram_mb:
                raise InvalidValue("gpu_vram_mb", f"sums to {sum(self.gpu_vram_mb)}, not vram_mb")

    @property
    def cpu_only(self) -> bool:
        """True when the machine has no GPU; such a machine never ranks above t1."""
        return self.gpu_count == 0

    @classmethod
    def from_devices(
        cls, devices: Sequence[GpuDevice], ram_mb: int, bandwidth_mbps: int
    ) -> Hardware:
        """Builds the hardware value from what the GPU and host probes report (SRS-NODE-03)."""
        vendors = {device.vendor.value for device in devices}
        if not vendors:
            vendor = GpuVendor.NONE
        elif len(vendors) == 1:
            vendor = GpuVendor(vendors.pop())
        else:
            vendor = GpuVendor.OTHER
        per_gpu = tuple(device.vram_mb for device in devices)
        return cls(
            vram_mb=sum(per_gpu),
            ram_mb=ram_mb,
            bandwidth_mbps=bandwidth_mbps,
            gpu_vendor=vendor,
            gpu_count=len(per_gpu),
            gpu_vram_mb=per_gpu,
        )


@attrs.frozen
class TierMinimum:
    """The least hardware a tier accepts; every resource must reach its minimum (SRS-NODE-03)."""

    vram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    ram_mb: int = attrs.field(validator=fields.integer(minimum=0))
    bandwidth_mbps: int = attrs.field(validator=fields.integer(minimum=0))

    def shortfalls(self, hardware: Hardware) -> tuple[str, ...]:
        """Names of the resources where ``hardware`` is below this minimum (empty: it fits)."""
        short = []
        if hardware.vram_mb < self.vram_mb:
            short.append("vram_mb")
        if hardware.ram_mb < self.ram_mb:
            short.append("ram_mb")
        if hardware.bandwidth_mbps < self.bandwidth_mbps:
            short.append("bandwidth_mbps")
        return tuple(short)

    def dominated_by(self, other: TierMinimum) -> bool:
        """True when ``other`` asks at least as much of every resource as this minimum."""
        return (
            self.vram_mb <= other.vram_mb
            and self.ram_mb <= other.ram_mb
            and self.bandwidth_mbps <= other.bandwidth_mbps
        )


#: Entry tier: any machine with ≈ 8 GB RAM and 10 Mbit/s; a GPU is optional.
DEFAULT_T1_MINIMUM = TierMinimum(vram_mb=0, ram_mb=7_500, bandwidth_mbps=10)
#: Prosumer: ≈ 12 GB of VRAM (an RTX 3060/4070 class card), ≈ 32 GB RAM, 100 Mbit/s.
DEFAULT_T2_MINIMUM = TierMinimum(vram_mb=12_000, ram_mb=30_000, bandwidth_mbps=100)
#: Datacenter: ≈ 40 GB of VRAM (an A100 40 GB or two 24 GB cards), ≈ 64 GB RAM, 500 Mbit/s.
DEFAULT_T3_MINIMUM = TierMinimum(vram_mb=40_000, ram_mb=60_000, bandwidth_mbps=500)


@attrs.frozen
class TierThresholds:
    """Where the tiers start (SRS-NODE-03); overridable configuration, validated monotone.

    Defaults (MiB and Mbit/s; each sits a few percent under the nominal size because drivers
    and kernels report less than the label, e.g. an A100 40 GB shows 40 536 MiB and a 32 GB
    machine about 31 900 MiB):

    ======  ========  ========  ==============
    tier    vram_mb   ram_mb    bandwidth_mbps
    ======  ========  ========  ==============
    t1      0         7 500     10
    t2      12 000    30 000    100
    t3      40 000    60 000    500
    ======  ========  ========  ==============

    A tier also requires at least one GPU above t1, whatever its ``vram_mb`` minimum is: a
    CPU-only machine is always t1. Every resource of t1 ≤ t2 ≤ t3 (checked at construction) so
    that more hardware never means a lower tier.
    """

    t1: TierMinimum = attrs.field(
        default=DEFAULT_T1_MINIMUM, validator=fields.instance_of(TierMinimum)
    )
    t2: TierMinimum = attrs.field(
        default=DEFAULT_T2_MINIMUM, validator=fields.instance_of(TierMinimum)
    )
    t3: TierMinimum = attrs.field(
        default=DEFAULT_T3_MINIMUM, validator=fields.instance_of(TierMinimum)
    )

    def __attrs_post_init__(self) -> None:
        if not self.t1.dominated_by(self.t2):
            raise InvalidValue("t2", "every minimum must be ≥ the t1 minimum")
        if not self.t2.dominated_by(self.t3):
            raise InvalidValue("t3", "every minimum must be ≥ the t2 minimum")

    def minimum(self, tier: Tier) -> TierMinimum:
        """The minimum hardware of ``tier``."""
        return {Tier.T1: self.t1, Tier.T2: self.t2, Tier.T3: self.t3}[tier]


def classify(hardware: Hardware, thresholds: TierThresholds | None = None) -> Tier:
    """The highest tier whose every minimum ``hardware`` meets (SRS-NODE-03).

    A machine without a GPU is capped at t1. Raises :class:`HardwareBelowMinimum` naming the
    short resources when even the t1 minimum is not met, so the node cannot register.
    """
    if not isinstance(hardware, Hardware):
        raise InvalidValue("hardware", f"must be Hardware, got {type(hardware).__name__}")
    limits = thresholds if thresholds is not None else TierThresholds()
    if not isinstance(limits, TierThresholds):
        raise InvalidValue("thresholds", f"must be TierThresholds, got {type(limits).__name__}")
    short = limits.t1.shortfalls(hardware)
    if short:
        raise HardwareBelowMinimum(
            f"hardware is below the t1 minimum in {', '.join(short)}", shortfalls=short
        )
    if hardware.cpu_only:
        return Tier.T1
    if not limits.t3.shortfalls(hardware):
        return Tier.T3
    if not limits.t2.shortfalls(hardware):
        return Tier.T2
    return Tier.T1


@attrs.frozen
class StakeRequirement:
    """Minimum channel capacity a tier must lock with the treasury (SRS-STAKE-01, SRS-NODE-11)."""

    tier: Tier = attrs.field(validator=fields.instance_of(Tier))
    min_sats: int = attrs.field(validator=fields.money(minimum=1))


#: Default stake minimums in satoshis (SRS-STAKE-01): t1 100 000, t2 500 000, t3 2 000 000.
DEFAULT_T1_STAKE_SATS = 100_000
DEFAULT_T2_STAKE_SATS = 500_000
DEFAULT_T3_STAKE_SATS = 2_000_000


@attrs.frozen
class StakeRequirements:
    """The stake minimum of every tier (SRS-STAKE-01); configurable, validated t1 ≤ t2 ≤ t3.

    Defaults: t1 100 000 sat, t2 500 000 sat, t3 2 000 000 sat.
    """

    t1_sats: int = attrs.field(default=DEFAULT_T1_STAKE_SATS, validator=fields.money(minimum=1))
    t2_sats: int = attrs.field(default=DEFAULT_T2_STAKE_SATS, validator=fields.money(minimum=1))
    t3_sats: int = attrs.field(default=DEFAULT_T3_STAKE_SATS, validator=fields.money(minimum=1))

    def __attrs_post_init__(self) -> None:
        if self.t2_sats < self.t1_sats:
            raise InvalidValue("t2_sats", f"must be ≥ t1_sats ({self.t1_sats})")
        if self.t3_sats < self.t2_sats:
            raise InvalidValue("t3_sats", f"must be ≥ t2_sats ({self.t2_sats})")

    @classmethod
    def of(cls, requirements: Iterable[StakeRequirement]) -> StakeRequirements:
        """Builds the table from one :class:`StakeRequirement` per tier (each tier exactly once)."""
        by_tier: dict[Tier, int] = {}
        for requirement in requirements:
            if not isinstance(requirement, StakeRequirement):
                raise InvalidValue("requirements", "must hold StakeRequirement values")
            if requirement.tier in by_tier:
                raise InvalidValue("requirements", f"{requirement.tier.value} appears twice")
            by_tier[requirement.tier] = requirement.min_sats
        missing = [tier.value for tier in Tier if tier not in by_tier]
        if missing:
            raise InvalidValue("requirements", f"missing tiers {', '.join(missing)}")
        return cls(t1_sats=by_tier[Tier.T1], t2_sats=by_tier[Tier.T2], t3_sats=by_tier[Tier.T3])

    def for_tier(self, tier: Tier) -> StakeRequirement:
        """The requirement of ``tier``."""
        # Identity tests, not a dict built per call: stake checks ask this per node per day.
        if tier is Tier.T1:
            sats = self.t1_sats
        elif tier is Tier.T2:
            sats = self.t2_sats
        elif tier is Tier.T3:
            sats = self.t3_sats
        else:
            raise KeyError(tier)
        return StakeRequirement(tier=tier, min_sats=sats)
