"""GPU detection through nvidia-smi / rocm-smi and tier classification (SRS-NODE-03).

Parsers run against recorded real outputs (tests/fixtures/gpu, sources in SOURCES.md); the
probes run fake ``nvidia-smi`` / ``rocm-smi`` executables through the real subprocess path; one
contract suite holds for the real probes and their fixed-answer twins.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_adapters.gpu import (
    NVIDIA_SMI_ARGS,
    ROCM_SMI_ARGS,
    FixedGpuProbe,
    FixedHostProbe,
    GpuReading,
    LinuxHostProbe,
    NvidiaSmiProbe,
    RocmSmiProbe,
    SystemGpuProbe,
    parse_meminfo_total_mb,
    parse_nvidia_smi_csv,
    parse_rocm_smi_json,
)
from owm_core.nodes.hardware import DeviceVendor, GpuDevice
from owm_core.nodes.tiers import GpuVendor as HardwareVendor
from owm_core.nodes.tiers import Hardware, Tier, classify
from owm_core.ports.gpu import GpuProbe, HostProbe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "gpu"
NVIDIA = FIXTURES / "nvidia-smi"
ROCM = FIXTURES / "rocm-smi"
MIB = 1024 * 1024


def fixture_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def install_fake_tool(
    bin_dir: Path,
    tool: str,
    *,
    stdout: str = "",
    stderr: str = "",
    exit_status: int = 0,
    expected_args: tuple[str, ...] | None = None,
    hang_s: float = 0.0,
    fork_helper: bool = False,
) -> Path:
    """Write an executable ``bin_dir/tool`` that behaves like the vendor tool would."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / tool
    script.write_text(
        f"#!{sys.executable}\n"
        "import subprocess, sys, time\n"
        f"expected = {expected_args!r}\n"
        "if expected is not None and tuple(sys.argv[1:]) != expected:\n"
        "    sys.stderr.write('unexpected arguments: %r' % (sys.argv[1:],))\n"
        "    sys.exit(2)\n"
        f"if {fork_helper!r}:\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep({hang_s!r})'])\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        "sys.stdout.flush()\n"
        f"time.sleep({hang_s!r})\n"
        f"sys.exit({exit_status!r})\n",
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def names_and_vram(devices: list[GpuDevice] | tuple[GpuDevice, ...]) -> list[tuple[int, str, int]]:
    return [(device.index, device.name, device.vram_mb) for device in devices]


# --- nvidia-smi parser on recorded outputs ------------------------------------------------


def test_nvidia_smi_single_a30_is_read_with_vram_in_mib_and_driver() -> None:
    reading = parse_nvidia_smi_csv(fixture_text(NVIDIA / "a30-x1-csv-header-units.csv"))

    assert reading.problems == ()
    assert reading.devices == (
        GpuDevice(
            index=0,
            vendor=DeviceVendor.NVIDIA,
            name="NVIDIA A30",
            vram_mb=24576,
            driver="580.105.08",
        ),
    )


def test_nvidia_smi_four_a30s_are_four_devices_in_index_order() -> None:
    reading = parse_nvidia_smi_csv(fixture_text(NVIDIA / "a30-x4-csv-header-units.csv"))

    assert reading.problems == ()
    assert names_and_vram(reading.devices) == [(i, "NVIDIA A30", 24576) for i in range(4)]
    assert {device.vendor for device in reading.devices} == {DeviceVendor.NVIDIA}


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("driver-not-loaded.txt", "couldn't communicate with the NVIDIA driver"),
        ("no-devices.txt", "No devices were found"),
    ],
)
def test_nvidia_smi_error_messages_give_no_device_and_a_problem_quoting_them(
    fixture: str, message: str
) -> None:
    reading = parse_nvidia_smi_csv(fixture_text(NVIDIA / fixture))

    assert reading.devices == ()
    assert len(reading.problems) == 1
    assert message in reading.problems[0]


def test_nvidia_smi_gpu_with_unavailable_memory_is_kept_with_zero_vram_and_noted() -> None:
    reading = parse_nvidia_smi_csv("0, NVIDIA GB10, [N/A], 580.95.05\n")

    assert names_and_vram(reading.devices) == [(0, "NVIDIA GB10", 0)]
    assert "[N/A]" in reading.problems[0]


def test_nvidia_smi_garbage_row_is_a_problem_and_the_good_rows_still_count() -> None:
    text = "0, NVIDIA A30, 24576, 580.105.08\n1, NVIDIA A30, lots, 580.105.08\n"

    reading = parse_nvidia_smi_csv(text)

    assert names_and_vram(reading.devices) == [(0, "NVIDIA A30", 24576)]
    assert len(reading.problems) == 1
    assert "lots" in reading.problems[0]


def test_empty_nvidia_smi_output_is_a_problem_not_a_silent_cpu_only_machine() -> None:
    assert parse_nvidia_smi_csv("\n").problems == ("printed no GPU rows",)


# --- rocm-smi parser on recorded outputs --------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "expected", "driver"),
    [
        ("rx7900xt-x1.json", [(0, "Radeon RX 7900 XT", 21458059264 // MIB)], ""),
        (
            "rx6700xt-x1-rocm6.1.2.json",
            [(0, "Navi 22 [Radeon RX 6700/6700 XT / 6800M]", 12868124672 // MIB)],
            "6.3.6",
        ),
        ("vega10xt-x1-no-card-series.json", [(0, "0xc1e", 17163091968 // MIB)], "5.9.25"),
        (
            "mi100-x6-rocm5.7.1.json",
            [(i, "Arcturus GL-XL [Instinct MI100]", 34342961152 // MIB) for i in range(6)],
            "6.2.4",
        ),
        (
            "mi100-x4-rocm6.0.2.json",
            [(i, "Arcturus GL-XL [Instinct MI100]", 34342961152 // MIB) for i in range(4)],
            "6.3.6",
        ),
    ],
)
def test_rocm_smi_cards_are_read_with_their_name_vram_in_mib_and_driver(
    fixture: str, expected: list[tuple[int, str, int]], driver: str
) -> None:
    reading = parse_rocm_smi_json(fixture_text(ROCM / fixture))

    assert reading.problems == ()
    assert names_and_vram(reading.devices) == expected
    assert {(device.vendor, device.driver) for device in reading.devices} == {
        (DeviceVendor.AMD, driver)
    }


def test_rocm_smi_cards_come_back_in_card_number_order_even_past_card9() -> None:
    cards = {
        f"card{n}": {"Card Series": f"GPU {n}", "VRAM Total Memory (B)": "1048576"}
        for n in (10, 2, 0)
    }

    reading = parse_rocm_smi_json(json.dumps(cards))

    assert [device.index for device in reading.devices] == [0, 2, 10]


def test_rocm_smi_without_amd_gpu_gives_no_device_and_says_so() -> None:
    reading = parse_rocm_smi_json(fixture_text(ROCM / "no-gpus-console.txt"))

    assert reading == GpuReading(devices=(), problems=("reported no AMD GPU",))


def test_rocm_smi_without_amdgpu_driver_gives_no_device_and_quotes_the_error() -> None:
    reading = parse_rocm_smi_json(fixture_text(ROCM / "driver-not-initialized-stderr.txt"))

    assert reading.devices == ()
    assert "Driver not initialized (amdgpu not found in modules)" in reading.problems[0]


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"card0": "busy"}', "[" * 100_000])
def test_rocm_smi_broken_output_is_a_problem_never_an_exception(text: str) -> None:
    reading = parse_rocm_smi_json(text)

    assert reading.devices == ()
    assert reading.problems


# --- property tests -----------------------------------------------------------------------

names = (
    st.text(
        alphabet=st.sampled_from(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 -_/()[]."
        ),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(bool)
)
drivers = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){1,2}", fullmatch=True)
gpus = st.lists(
    st.builds(
        GpuDevice,
        index=st.integers(0, 64),
        vendor=st.just(DeviceVendor.NVIDIA),
        name=names,
        vram_mb=st.integers(0, 10**7),
        driver=drivers,
    ),
    max_size=8,
)


@settings(max_examples=200)
@given(
    text=st.one_of(st.text(), st.lists(st.text(alphabet=" ,0123456789MiB[N/A]x\n")).map(", ".join))
)
def test_nvidia_smi_parser_never_raises_and_never_returns_nothing_silently(text: str) -> None:
    reading = parse_nvidia_smi_csv(text)

    assert isinstance(reading, GpuReading)
    assert reading.devices or reading.problems


@settings(max_examples=100)
@given(devices=gpus, header=st.booleans())
def test_well_formed_nvidia_smi_rows_round_trip(devices: list[GpuDevice], header: bool) -> None:
    unit = " MiB" if header else ""
    rows = [f"{d.index}, {d.name}, {d.vram_mb}{unit}, {d.driver}" for d in devices]
    if header:
        rows.insert(0, "index, name, memory.total [MiB], driver_version")

    reading = parse_nvidia_smi_csv("\n".join(rows) + "\n")

    assert list(reading.devices) == devices
    assert reading.problems == (() if devices else ("printed no GPU rows",))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "card0",
                    "card1",
                    "system",
                    "VRAM Total Memory (B)",
                    "Card Series",
                    "Driver version",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200)
@given(value=json_values, prefix=st.text(max_size=10))
def test_rocm_smi_parser_never_raises_on_any_json_or_text(value: object, prefix: str) -> None:
    reading = parse_rocm_smi_json(prefix + json.dumps(value))

    assert reading.devices or reading.problems


@settings(max_examples=100)
@given(
    cards=st.dictionaries(st.integers(0, 31), st.tuples(names, st.integers(0, 2**40)), max_size=8)
)
def test_well_formed_rocm_smi_cards_round_trip(cards: dict[int, tuple[str, int]]) -> None:
    document = {
        f"card{n}": {"Card Series": name, "VRAM Total Memory (B)": str(vram_b)}
        for n, (name, vram_b) in cards.items()
    }
    document["system"] = {"Driver version": "6.8.5"}

    reading = parse_rocm_smi_json(json.dumps(document))

    assert [(d.index, d.name, d.vram_mb, d.driver) for d in reading.devices] == [
        (n, cards[n][0], cards[n][1] // MIB, "6.8.5") for n in sorted(cards)
    ]


# --- the probes through the real subprocess path ------------------------------------------


def test_fake_nvidia_smi_first_on_path_is_run_with_the_query_and_parsed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    install_fake_tool(
        bin_dir,
        "nvidia-smi",
        stdout=fixture_text(NVIDIA / "a30-x4-csv-header-units.csv"),
        expected_args=NVIDIA_SMI_ARGS,
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    probe = NvidiaSmiProbe()

    devices = probe.devices()

    assert names_and_vram(devices) == [(i, "NVIDIA A30", 24576) for i in range(4)]
    assert probe.problems == []


def test_nvidia_smi_that_cannot_reach_the_driver_is_no_gpu_with_the_reason_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install_fake_tool(
        tmp_path,
        "nvidia-smi",
        stdout=fixture_text(NVIDIA / "driver-not-loaded.txt"),
        exit_status=9,
    )
    probe = NvidiaSmiProbe(search_path=str(tmp_path))

    assert probe.devices() == []
    [problem] = probe.problems
    assert problem.tool == "nvidia-smi"
    assert "status 9" in problem.reason
    assert "couldn't communicate with the NVIDIA driver" in problem.reason
    assert "couldn't communicate" in caplog.text


def test_nvidia_smi_that_hangs_is_killed_at_the_timeout_with_its_helpers(tmp_path: Path) -> None:
    install_fake_tool(tmp_path, "nvidia-smi", hang_s=30.0, fork_helper=True)
    probe = NvidiaSmiProbe(search_path=str(tmp_path), timeout_s=1.0)

    started = time.monotonic()
    devices = probe.devices()
    elapsed = time.monotonic() - started

    assert devices == []
    assert "no answer within 1 s" in probe.problems[0].reason
    assert elapsed < 10


def test_configured_nvidia_smi_path_that_does_not_exist_is_a_problem(tmp_path: Path) -> None:
    probe = NvidiaSmiProbe(executable=str(tmp_path / "missing" / "nvidia-smi"))

    assert probe.devices() == []
    assert "is not an executable file" in probe.problems[0].reason


def test_rocm_smi_without_amdgpu_driver_exits_zero_yet_is_reported(tmp_path: Path) -> None:
    install_fake_tool(
        tmp_path,
        "rocm-smi",
        stderr=fixture_text(ROCM / "driver-not-initialized-stderr.txt"),
        expected_args=ROCM_SMI_ARGS,
    )
    probe = RocmSmiProbe(search_path=str(tmp_path))

    assert probe.devices() == []
    assert any("Driver not initialized" in problem.reason for problem in probe.problems)


def test_system_probe_merges_nvidia_and_amd_gpus(tmp_path: Path) -> None:
    install_fake_tool(
        tmp_path, "nvidia-smi", stdout=fixture_text(NVIDIA / "a30-x1-csv-header-units.csv")
    )
    install_fake_tool(tmp_path, "rocm-smi", stdout=fixture_text(ROCM / "rx7900xt-x1.json"))
    probe = SystemGpuProbe.searching(str(tmp_path))

    devices = probe.devices()

    assert [(d.vendor, d.name) for d in devices] == [
        (DeviceVendor.NVIDIA, "NVIDIA A30"),
        (DeviceVendor.AMD, "Radeon RX 7900 XT"),
    ]
    assert probe.problems == []
    hardware = Hardware.from_devices(devices, ram_mb=64_000, bandwidth_mbps=1_000)
    assert hardware.gpu_vendor is HardwareVendor.OTHER
    assert hardware.vram_mb == 24576 + 21458059264 // MIB
    assert classify(hardware) is Tier.T3


def test_one_failing_tool_costs_only_its_own_vendors_gpus(tmp_path: Path) -> None:
    install_fake_tool(
        tmp_path, "nvidia-smi", stdout=fixture_text(NVIDIA / "no-devices.txt"), exit_status=6
    )
    install_fake_tool(tmp_path, "rocm-smi", stdout=fixture_text(ROCM / "mi100-x4-rocm6.0.2.json"))
    probe = SystemGpuProbe.searching(str(tmp_path))

    devices = probe.devices()

    assert [device.vendor for device in devices] == [DeviceVendor.AMD] * 4
    assert [(p.tool, "No devices were found" in p.reason) for p in probe.problems] == [
        ("nvidia-smi", True)
    ]


# --- CPU-only machines and classification -------------------------------------------------


def test_cpu_only_machine_has_no_gpu_no_problem_and_is_classified_t1(tmp_path: Path) -> None:
    empty_path = tmp_path / "no-tools"
    empty_path.mkdir()
    probe = SystemGpuProbe.searching(str(empty_path))

    devices = probe.devices()
    hardware = Hardware.from_devices(devices, ram_mb=16_000, bandwidth_mbps=100)

    assert devices == []
    assert probe.problems == []
    assert hardware.cpu_only
    assert hardware.gpu_vendor is HardwareVendor.NONE
    assert classify(hardware) is Tier.T1


def test_recorded_multi_gpu_outputs_classify_into_the_expected_tiers() -> None:
    four_a30 = parse_nvidia_smi_csv(fixture_text(NVIDIA / "a30-x4-csv-header-units.csv"))
    one_a30 = parse_nvidia_smi_csv(fixture_text(NVIDIA / "a30-x1-csv-header-units.csv"))
    six_mi100 = parse_rocm_smi_json(fixture_text(ROCM / "mi100-x6-rocm5.7.1.json"))

    assert classify(Hardware.from_devices(one_a30.devices, 32_000, 100)) is Tier.T2
    assert classify(Hardware.from_devices(four_a30.devices, 64_000, 1_000)) is Tier.T3
    hardware = Hardware.from_devices(six_mi100.devices, 256_000, 10_000)
    assert hardware.gpu_vendor is HardwareVendor.AMD
    assert hardware.vram_mb == 6 * 32752
    assert classify(hardware) is Tier.T3


# --- contract: real probes and their fixed-answer twins -----------------------------------


def _system_probe_with(tmp_path: Path) -> tuple[GpuProbe, list[GpuDevice]]:
    install_fake_tool(
        tmp_path, "nvidia-smi", stdout=fixture_text(NVIDIA / "a30-x1-csv-header-units.csv")
    )
    install_fake_tool(tmp_path, "rocm-smi", stdout=fixture_text(ROCM / "mi100-x4-rocm6.0.2.json"))
    expected = [
        *parse_nvidia_smi_csv(fixture_text(NVIDIA / "a30-x1-csv-header-units.csv")).devices,
        *parse_rocm_smi_json(fixture_text(ROCM / "mi100-x4-rocm6.0.2.json")).devices,
    ]
    return SystemGpuProbe.searching(str(tmp_path)), expected


def _fixed_probe_with(_tmp_path: Path) -> tuple[GpuProbe, list[GpuDevice]]:
    devices = list(parse_rocm_smi_json(fixture_text(ROCM / "mi100-x6-rocm5.7.1.json")).devices)
    return FixedGpuProbe(devices), devices


def _empty_system_probe(tmp_path: Path) -> tuple[GpuProbe, list[GpuDevice]]:
    return SystemGpuProbe.searching(str(tmp_path)), []


def _empty_fixed_probe(_tmp_path: Path) -> tuple[GpuProbe, list[GpuDevice]]:
    return FixedGpuProbe(), []


@pytest.mark.parametrize(
    "make", [_system_probe_with, _fixed_probe_with, _empty_system_probe, _empty_fixed_probe]
)
def test_gpu_probe_contract(
    make: Callable[[Path], tuple[GpuProbe, list[GpuDevice]]], tmp_path: Path
) -> None:
    probe, expected = make(tmp_path)

    first = probe.devices()
    second = probe.devices()

    assert first == second == expected
    assert all(isinstance(device, GpuDevice) for device in first)
    assert len({(d.vendor, d.index) for d in first}) == len(first)
    hardware = Hardware.from_devices(first, ram_mb=64_000, bandwidth_mbps=1_000)
    assert hardware.gpu_count == len(first)
    assert (classify(hardware) is Tier.T1) == (not first or hardware.vram_mb < 12_000)


@pytest.mark.parametrize(
    "probe",
    [LinuxHostProbe(bandwidth_estimate_mbps=250), FixedHostProbe(ram=31_900, bandwidth=250)],
)
def test_host_probe_contract(probe: HostProbe) -> None:
    assert probe.ram_mb() > 0
    assert probe.bandwidth_mbps() == 250


def test_linux_host_probe_reads_memtotal_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32654436 kB\nMemFree:         1234 kB\n")

    assert LinuxHostProbe(100, meminfo_path=str(meminfo)).ram_mb() == 32654436 // 1024


def test_linux_host_probe_falls_back_to_sysconf_without_meminfo(tmp_path: Path) -> None:
    probe = LinuxHostProbe(100, meminfo_path=str(tmp_path / "absent"))

    assert probe.ram_mb() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // MIB


def test_meminfo_without_memtotal_gives_none() -> None:
    assert parse_meminfo_total_mb("MemFree: 12 kB\n") is None
