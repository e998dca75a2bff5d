"""AMD GPUs through ``rocm-smi`` (SRS-NODE-03).

Owns the query this node sends (:data:`ROCM_SMI_ARGS`), the pure parser of its JSON answer
(:func:`parse_rocm_smi_json`) and :class:`RocmSmiProbe`, which runs the tool.

``rocm-smi --showproductname --showmeminfo vram --showdriverversion --json`` prints one object
per GPU under ``"card0"``, ``"card1"``, … and the driver under ``"system"``. Key names as
rocm_smi.py writes them (``python_smi_tools/rocm_smi.py`` in ROCm/rocm_smi_lib):

* ``"VRAM Total Memory (B)"`` — bytes, as a decimal string (``showMemInfo``);
* the product name: ``"Card Series"`` / ``"Card Model"`` / ``"Card SKU"`` since ROCm 6.1,
  ``"Card series"`` / ``"Card model"`` before; some releases add ``"Device Name"``, and some
  cards report no series at all;
* ``"system": {"Driver version": …}``.

Failures rocm-smi does not signal with its exit status are handled too: without the amdgpu
driver it logs "Driver not initialized (amdgpu not found in modules)" on stderr, prints nothing
and exits 0; without an AMD GPU it warns "No AMD GPUs specified" and prints only ``"system"``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs

from owm_adapters.gpu.tool import GpuReading, ToolProbe, clip
from owm_core.errors import InvalidValue
from owm_core.nodes.hardware import DeviceVendor, GpuDevice

TOOL = "rocm-smi"
ROCM_SMI_ARGS = ("--showproductname", "--showmeminfo", "vram", "--showdriverversion", "--json")

_MIB = 1024 * 1024
_CARD = re.compile(r"card([0-9]{1,6})")
_BYTES = re.compile(r"[0-9]{1,20}")
# Most to least descriptive; the hex PCI ids in "Card Model" only if nothing better exists.
_NAME_KEYS = (
    "Card Series",
    "Card series",
    "Device Name",
    "Card Model",
    "Card model",
    "Card SKU",
)
_VRAM_KEY = "VRAM Total Memory (B)"


def parse_rocm_smi_json(text: str) -> GpuReading:
    """The GPUs in ``rocm-smi --json`` output, and a problem for everything unusable.

    Never raises, whatever ``text`` is. Text before the JSON object (a warning that reached
    stdout) is skipped. Devices come back ordered by card number; VRAM is converted from bytes
    to MiB (rounded down). A card without a readable VRAM total is kept with 0 MiB and noted.
    """
    start = text.find("{")
    if start < 0:
        said = clip(text)
        return GpuReading(problems=("printed no JSON" + (f": {said}" if said else ""),))
    try:
        data, _ = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        return GpuReading(problems=(f"printed invalid JSON ({clip(str(exc), 120)})",))
    if not isinstance(data, dict):
        return GpuReading(problems=(f"printed JSON that is not an object: {clip(text, 120)}",))
    driver = _driver(data.get("system"))
    cards: list[tuple[int, str, Any]] = []
    for key, value in data.items():
        matched = _CARD.fullmatch(key) if isinstance(key, str) else None
        if matched is not None:
            cards.append((int(matched.group(1)), key, value))
    devices: list[GpuDevice] = []
    problems: list[str] = []
    for index, key, value in sorted(cards):
        if not isinstance(value, dict):
            problems.append(f"{key} is not an object")
            continue
        try:
            device, note = _card(index, key, value, driver)
        except InvalidValue as exc:
            problems.append(f"{key} is unreadable ({exc.message})")
            continue
        devices.append(device)
        if note:
            problems.append(note)
    if not cards:
        problems.append("reported no AMD GPU")
    return GpuReading(devices=tuple(devices), problems=tuple(problems))


def _driver(system: object) -> str:
    if isinstance(system, dict):
        version = system.get("Driver version")
        if isinstance(version, str):
            return version.strip()[:100]
    return ""


def _card(index: int, key: str, card: dict[Any, Any], driver: str) -> tuple[GpuDevice, str]:
    """One ``cardN`` object as a device, plus a note when its VRAM could not be read."""
    name = next(
        (
            value.strip()[:200]
            for value in (card.get(name_key) for name_key in _NAME_KEYS)
            if isinstance(value, str) and value.strip()
        ),
        f"AMD GPU {key}",
    )
    vram_text = card.get(_VRAM_KEY)
    note = ""
    if isinstance(vram_text, str) and _BYTES.fullmatch(vram_text.strip()):
        vram_mb = int(vram_text.strip()) // _MIB
    else:
        vram_mb = 0
        note = f"{key} ({clip(name, 80)}) has no readable {_VRAM_KEY!r}"
    device = GpuDevice(
        index=index, vendor=DeviceVendor.AMD, name=name, vram_mb=vram_mb, driver=driver
    )
    return device, note


@attrs.define
class RocmSmiProbe(ToolProbe):
    """The AMD half of SRS-NODE-03: runs ``rocm-smi`` and reads its JSON answer.

    Knobs and ``problems`` as :class:`~owm_adapters.gpu.tool.ToolProbe`.
    """

    tool = TOOL
    args = ROCM_SMI_ARGS
    parse = staticmethod(parse_rocm_smi_json)
