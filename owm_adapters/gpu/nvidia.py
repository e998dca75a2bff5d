"""NVIDIA GPUs through ``nvidia-smi`` (SRS-NODE-03).

Owns the query this node sends (:data:`NVIDIA_SMI_ARGS`), the pure parser of its CSV answer
(:func:`parse_nvidia_smi_csv`) and :class:`NvidiaSmiProbe`, which runs the tool.

The answer to ``--query-gpu=index,name,memory.total,driver_version
--format=csv,noheader,nounits`` is one line per GPU, e.g. ``0, NVIDIA A30, 24576, 580.105.08``,
with ``memory.total`` in MiB. The parser also reads the ``--format=csv`` form (a header line and
``24576 MiB``), which is how such output is usually published, and turns anything else — the
driver's "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver", "No
devices were found", a ``[N/A]`` field, garbage — into problems instead of exceptions.
"""

from __future__ import annotations

import re

import attrs

from owm_adapters.gpu.tool import GpuReading, ToolProbe, clip
from owm_core.errors import InvalidValue
from owm_core.nodes.hardware import DeviceVendor, GpuDevice

TOOL = "nvidia-smi"
NVIDIA_SMI_ARGS = (
    "--query-gpu=index,name,memory.total,driver_version",
    "--format=csv,noheader,nounits",
)

# Values nvidia-smi prints when a field cannot be read on this GPU or driver.
_UNAVAILABLE = frozenset({"", "n/a", "[n/a]", "[not supported]", "[unknown error]"})
_INDEX = re.compile(r"[0-9]{1,9}")
_MIB = re.compile(r"([0-9]{1,12})(?:\s*MiB)?", re.IGNORECASE)


def parse_nvidia_smi_csv(text: str) -> GpuReading:
    """The GPUs in ``nvidia-smi`` CSV output, and a problem for every line that is not one.

    Never raises, whatever ``text`` is. A GPU whose ``memory.total`` is unavailable is kept
    with 0 MiB (it is a GPU, but no VRAM can be promised) and noted as a problem.
    """
    devices: list[GpuDevice] = []
    problems: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        cells = [cell.strip() for cell in line.split(",")]
        if cells[0].lower() == "index":
            continue  # the header line of --format=csv
        try:
            device, problem = _row(cells)
        except ValueError as exc:  # InvalidValue included; also int() on absurd input
            reason = exc.message if isinstance(exc, InvalidValue) else str(exc)
            problems.append(f"unreadable GPU row {clip(line, 120)!r} ({reason})")
            continue
        if device is None:
            problems.append(f"unexpected output: {clip(line)}")
            continue
        devices.append(device)
        if problem:
            problems.append(problem)
    if not devices and not problems:
        problems.append("printed no GPU rows")
    return GpuReading(devices=tuple(devices), problems=tuple(problems))


def _row(cells: list[str]) -> tuple[GpuDevice | None, str]:
    """One CSV row as a device (None if the line is not a GPU row) and a note about it."""
    if len(cells) < 4 or not _INDEX.fullmatch(cells[0]):
        return None, ""
    index = int(cells[0])
    # A comma inside the name would split it: the name is everything between index and memory.
    name = ", ".join(cells[1:-2])
    memory, driver = cells[-2], cells[-1]
    note = ""
    if memory.lower() in _UNAVAILABLE:
        vram_mb = 0
        note = f"GPU {index} ({clip(name, 80)}) reports memory.total as {memory or 'empty'}"
    else:
        matched = _MIB.fullmatch(memory)
        if matched is None:
            raise ValueError(f"memory.total {clip(memory, 40)!r} is not a number of MiB")
        vram_mb = int(matched.group(1))
    if driver.lower() in _UNAVAILABLE:
        driver = ""
    device = GpuDevice(
        index=index, vendor=DeviceVendor.NVIDIA, name=name, vram_mb=vram_mb, driver=driver[:100]
    )
    return device, note


@attrs.define
class NvidiaSmiProbe(ToolProbe):
    """The NVIDIA half of SRS-NODE-03: runs ``nvidia-smi`` and reads its CSV answer.

    Knobs and ``problems`` as :class:`~owm_adapters.gpu.tool.ToolProbe`.
    """

    tool = TOOL
    args = NVIDIA_SMI_ARGS
    parse = staticmethod(parse_nvidia_smi_csv)
