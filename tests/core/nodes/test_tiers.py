"""Hardware tiers and stake minimums (SRS-NODE-03, SRS-STAKE-01)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import DomainError, InvalidValue
from owm_core.nodes.hardware import DeviceVendor as ProbedVendor
from owm_core.nodes.hardware import GpuDevice
from owm_core.nodes.tiers import (
    GpuVendor,
    Hardware,
    HardwareBelowMinimum,
    StakeRequirement,
    StakeRequirements,
    Tier,
    TierMinimum,
    TierThresholds,
    classify,
)

GPU_VENDORS = [GpuVendor.NVIDIA, GpuVendor.AMD, GpuVendor.OTHER]


def gpu_box(vram_mb: int, ram_mb: int, bandwidth_mbps: int, gpus: int = 1) -> Hardware:
    return Hardware(
        vram_mb=vram_mb,
        ram_mb=ram_mb,
        bandwidth_mbps=bandwidth_mbps,
        gpu_vendor=GpuVendor.NVIDIA,
        gpu_count=gpus,
    )


def cpu_box(ram_mb: int, bandwidth_mbps: int) -> Hardware:
    return Hardware(vram_mb=0, ram_mb=ram_mb, bandwidth_mbps=bandwidth_mbps)


@st.composite
def hardware(draw: st.DrawFn) -> Hardware:
    gpus = draw(st.integers(0, 8))
    vendor = GpuVendor.NONE if gpus == 0 else draw(st.sampled_from(GPU_VENDORS))
    return Hardware(
        vram_mb=0 if gpus == 0 else draw(st.integers(0, 200_000)),
        ram_mb=draw(st.integers(0, 300_000)),
        bandwidth_mbps=draw(st.integers(0, 20_000)),
        gpu_vendor=vendor,
        gpu_count=gpus,
    )


@st.composite
def thresholds(draw: st.DrawFn) -> TierThresholds:
    def minimum(floor: TierMinimum) -> TierMinimum:
        return TierMinimum(
            vram_mb=floor.vram_mb + draw(st.integers(0, 50_000)),
            ram_mb=floor.ram_mb + draw(st.integers(0, 50_000)),
            bandwidth_mbps=floor.bandwidth_mbps + draw(st.integers(0, 1_000)),
        )

    t1 = minimum(TierMinimum(vram_mb=0, ram_mb=0, bandwidth_mbps=0))
    t2 = minimum(t1)
    return TierThresholds(t1=t1, t2=t2, t3=minimum(t2))


def classify_or_none(box: Hardware, limits: TierThresholds) -> Tier | None:
    try:
        return classify(box, limits)
    except HardwareBelowMinimum:
        return None


def rank(tier: Tier | None) -> int:
    return 0 if tier is None else tier.rank


# --- examples with the documented defaults ---------------------------------------------------


def test_a_datacenter_gpu_machine_is_tier_3() -> None:
    assert classify(gpu_box(vram_mb=81_920, ram_mb=262_144, bandwidth_mbps=10_000)) is Tier.T3


def test_an_a100_40gb_as_the_driver_reports_it_is_tier_3() -> None:
    assert classify(gpu_box(vram_mb=40_536, ram_mb=128_000, bandwidth_mbps=1_000)) is Tier.T3


def test_a_12gb_consumer_card_in_a_32gb_box_is_tier_2() -> None:
    assert classify(gpu_box(vram_mb=12_288, ram_mb=31_900, bandwidth_mbps=300)) is Tier.T2


def test_a_datacenter_gpu_on_a_slow_link_drops_to_the_tier_its_bandwidth_allows() -> None:
    assert classify(gpu_box(vram_mb=81_920, ram_mb=262_144, bandwidth_mbps=150)) is Tier.T2
    assert classify(gpu_box(vram_mb=81_920, ram_mb=262_144, bandwidth_mbps=50)) is Tier.T1


def test_an_8gb_gaming_card_is_tier_1() -> None:
    assert classify(gpu_box(vram_mb=8_192, ram_mb=16_000, bandwidth_mbps=100)) is Tier.T1


def test_a_cpu_only_machine_meeting_the_entry_minimum_is_tier_1() -> None:
    assert classify(cpu_box(ram_mb=512_000, bandwidth_mbps=10_000)) is Tier.T1


def test_a_machine_below_the_entry_minimum_is_refused_naming_what_is_short() -> None:
    with pytest.raises(HardwareBelowMinimum) as caught:
        classify(cpu_box(ram_mb=4_096, bandwidth_mbps=5))
    assert caught.value.shortfalls == ("ram_mb", "bandwidth_mbps")
    assert isinstance(caught.value, DomainError)
    assert caught.value.code == "hardware-below-minimum"


def test_thresholds_can_be_overridden() -> None:
    generous = TierThresholds(
        t1=TierMinimum(vram_mb=0, ram_mb=1_000, bandwidth_mbps=1),
        t2=TierMinimum(vram_mb=4_000, ram_mb=8_000, bandwidth_mbps=10),
        t3=TierMinimum(vram_mb=8_000, ram_mb=16_000, bandwidth_mbps=100),
    )
    assert classify(gpu_box(vram_mb=8_192, ram_mb=16_000, bandwidth_mbps=100), generous) is Tier.T3
    assert classify(cpu_box(ram_mb=2_000, bandwidth_mbps=2), generous) is Tier.T1


def test_hardware_is_built_from_probed_devices() -> None:
    devices = [
        GpuDevice(index=0, vendor=ProbedVendor.NVIDIA, name="RTX 4090", vram_mb=24_564),
        GpuDevice(index=1, vendor=ProbedVendor.NVIDIA, name="RTX 4090", vram_mb=24_564),
    ]
    box = Hardware.from_devices(devices, ram_mb=128_000, bandwidth_mbps=1_000)
    assert box.gpu_vendor is GpuVendor.NVIDIA
    assert (box.gpu_count, box.vram_mb, box.gpu_vram_mb) == (2, 49_128, (24_564, 24_564))
    assert classify(box) is Tier.T3


def test_mixed_vendors_are_other_and_no_devices_is_cpu_only() -> None:
    mixed = [
        GpuDevice(index=0, vendor=ProbedVendor.NVIDIA, name="a", vram_mb=8_000),
        GpuDevice(index=1, vendor=ProbedVendor.AMD, name="b", vram_mb=8_000),
    ]
    assert Hardware.from_devices(mixed, 16_000, 100).gpu_vendor is GpuVendor.OTHER
    assert Hardware.from_devices([], 16_000, 100).cpu_only


def test_tiers_are_ordered_by_rank() -> None:
    assert [tier.rank for tier in Tier] == [1, 2, 3]
    assert [tier.value for tier in Tier] == ["t1", "t2", "t3"]


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"vram_mb": 1.5}, "vram_mb"),
        ({"ram_mb": -1}, "ram_mb"),
        ({"bandwidth_mbps": True}, "bandwidth_mbps"),
        ({"gpu_vendor": "nvidia"}, "gpu_vendor"),
        ({"gpu_count": -1}, "gpu_count"),
        ({"gpu_vendor": GpuVendor.NONE, "gpu_count": 1}, "gpu_count"),
        ({"gpu_vendor": GpuVendor.NONE, "gpu_count": 0, "vram_mb": 10}, "vram_mb"),
        ({"gpu_count": 0}, "gpu_count"),
        ({"gpu_vram_mb": [12_000, 12_000]}, "gpu_vram_mb"),
        ({"gpu_vram_mb": [10_000]}, "gpu_vram_mb"),
        ({"gpu_vram_mb": [-5]}, "gpu_vram_mb"),
        ({"gpu_vram_mb": "12000"}, "gpu_vram_mb"),
    ],
)
def test_invalid_hardware_is_refused_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    base: dict[str, object] = {
        "vram_mb": 12_000,
        "ram_mb": 32_000,
        "bandwidth_mbps": 100,
        "gpu_vendor": GpuVendor.NVIDIA,
        "gpu_count": 1,
    }
    with pytest.raises(InvalidValue) as caught:
        Hardware(**{**base, **kwargs})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_per_gpu_list_is_kept_as_an_immutable_tuple() -> None:
    box = Hardware(
        vram_mb=24_000,
        ram_mb=32_000,
        bandwidth_mbps=100,
        gpu_vendor=GpuVendor.AMD,
        gpu_count=2,
        gpu_vram_mb=[12_000, 12_000],
    )
    assert box.gpu_vram_mb == (12_000, 12_000)


def test_thresholds_that_are_not_monotone_are_refused() -> None:
    with pytest.raises(InvalidValue) as caught:
        TierThresholds(t2=TierMinimum(vram_mb=12_000, ram_mb=4_000, bandwidth_mbps=100))
    assert caught.value.field == "t2"
    with pytest.raises(InvalidValue) as caught:
        TierThresholds(t3=TierMinimum(vram_mb=40_000, ram_mb=60_000, bandwidth_mbps=50))
    assert caught.value.field == "t3"
    with pytest.raises(InvalidValue) as caught:
        TierMinimum(vram_mb=0, ram_mb=1.0, bandwidth_mbps=0)  # type: ignore[arg-type]
    assert caught.value.field == "ram_mb"


# --- stake minimums --------------------------------------------------------------------------


def test_default_stake_minimums_are_100k_500k_and_2m_sat() -> None:
    table = StakeRequirements()
    assert [table.for_tier(tier).min_sats for tier in Tier] == [100_000, 500_000, 2_000_000]
    assert table.for_tier(Tier.T2) == StakeRequirement(tier=Tier.T2, min_sats=500_000)


def test_stake_minimums_are_configurable_from_requirements() -> None:
    table = StakeRequirements.of(
        [
            StakeRequirement(Tier.T3, 3_000_000),
            StakeRequirement(Tier.T1, 50_000),
            StakeRequirement(Tier.T2, 50_000),
        ]
    )
    assert (table.t1_sats, table.t2_sats, table.t3_sats) == (50_000, 50_000, 3_000_000)


def test_a_stake_table_must_name_every_tier_once() -> None:
    with pytest.raises(InvalidValue) as caught:
        StakeRequirements.of([StakeRequirement(Tier.T1, 1), StakeRequirement(Tier.T2, 2)])
    assert caught.value.field == "requirements"
    with pytest.raises(InvalidValue):
        StakeRequirements.of([StakeRequirement(Tier.T1, 1)] * 2)
    with pytest.raises(InvalidValue) as caught:
        StakeRequirements.of([(Tier.T1, 1)])  # type: ignore[list-item]
    assert caught.value.field == "requirements"


def test_classify_refuses_what_is_not_hardware_or_thresholds() -> None:
    with pytest.raises(InvalidValue) as caught:
        classify({"ram_mb": 64_000})  # type: ignore[arg-type]
    assert caught.value.field == "hardware"
    with pytest.raises(InvalidValue) as caught:
        classify(cpu_box(64_000, 100), {"t1": None})  # type: ignore[arg-type]
    assert caught.value.field == "thresholds"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"t1_sats": 0}, "t1_sats"),
        ({"t1_sats": 100_000.0}, "t1_sats"),
        ({"t2_sats": 50_000}, "t2_sats"),
        ({"t3_sats": 400_000}, "t3_sats"),
    ],
)
def test_invalid_stake_minimums_are_refused_naming_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        StakeRequirements(**kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_a_stake_requirement_refuses_float_sats() -> None:
    with pytest.raises(InvalidValue) as caught:
        StakeRequirement(tier=Tier.T1, min_sats=1e5)  # type: ignore[arg-type]
    assert caught.value.field == "min_sats"
    with pytest.raises(InvalidValue) as caught:
        StakeRequirement(tier="t1", min_sats=1)  # type: ignore[arg-type]
    assert caught.value.field == "tier"


# --- properties ------------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    box=hardware(),
    limits=thresholds(),
    more_vram=st.integers(0, 100_000),
    more_ram=st.integers(0, 100_000),
    more_bandwidth=st.integers(0, 5_000),
    more_gpus=st.integers(0, 4),
)
def test_more_of_every_resource_never_yields_a_lower_tier(
    box: Hardware,
    limits: TierThresholds,
    more_vram: int,
    more_ram: int,
    more_bandwidth: int,
    more_gpus: int,
) -> None:
    gpus = box.gpu_count + more_gpus
    bigger = Hardware(
        vram_mb=box.vram_mb + more_vram if gpus else 0,
        ram_mb=box.ram_mb + more_ram,
        bandwidth_mbps=box.bandwidth_mbps + more_bandwidth,
        gpu_vendor=box.gpu_vendor if box.gpu_count or not gpus else GpuVendor.OTHER,
        gpu_count=gpus,
    )
    assert rank(classify_or_none(bigger, limits)) >= rank(classify_or_none(box, limits))


@settings(max_examples=200)
@given(ram=st.integers(0, 10**7), bandwidth=st.integers(0, 10**6), limits=thresholds())
def test_a_cpu_only_machine_never_ranks_above_tier_1(
    ram: int, bandwidth: int, limits: TierThresholds
) -> None:
    assert classify_or_none(cpu_box(ram, bandwidth), limits) in (None, Tier.T1)


@settings(max_examples=200)
@given(box=hardware(), limits=thresholds())
def test_classification_is_total_on_valid_input(box: Hardware, limits: TierThresholds) -> None:
    meets_entry = not limits.t1.shortfalls(box)
    if meets_entry:
        tier = classify(box, limits)
        assert not limits.minimum(tier).shortfalls(box)
        assert tier is Tier.T1 or not box.cpu_only
        reachable = [t for t in Tier if not limits.minimum(t).shortfalls(box)]
        highest = Tier.T1 if box.cpu_only else max(reachable, key=lambda t: t.rank)
        assert tier is highest
    else:
        with pytest.raises(HardwareBelowMinimum):
            classify(box, limits)
