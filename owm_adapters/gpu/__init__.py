"""GPU and host probing through the vendors' own tools (SRS-NODE-03, SRS-NODE-04).

The adapter behind :mod:`owm_core.ports.gpu`:

* :class:`SystemGpuProbe` — the node's :class:`~owm_core.ports.gpu.GpuProbe`: ``nvidia-smi``
  then ``rocm-smi``; ``[]`` on a CPU-only machine; a failing tool is a logged
  :class:`ProbeProblem`, never an exception.
* :class:`NvidiaSmiProbe` / :func:`parse_nvidia_smi_csv`, :class:`RocmSmiProbe` /
  :func:`parse_rocm_smi_json` — one vendor each; the parsers are pure and never raise.
* :class:`LinuxHostProbe` — the :class:`~owm_core.ports.gpu.HostProbe`: RAM from
  ``/proc/meminfo``, bandwidth from the operator's configured estimate.
* :class:`FixedGpuProbe`, :class:`FixedHostProbe` — the fixed-answer twins.

Classification itself is domain logic:
``owm_core.nodes.tiers.classify(Hardware.from_devices(...))``.
"""

from owm_adapters.gpu.fake import FixedGpuProbe, FixedHostProbe
from owm_adapters.gpu.host import LinuxHostProbe, parse_meminfo_total_mb
from owm_adapters.gpu.nvidia import NVIDIA_SMI_ARGS, NvidiaSmiProbe, parse_nvidia_smi_csv
from owm_adapters.gpu.rocm import ROCM_SMI_ARGS, RocmSmiProbe, parse_rocm_smi_json
from owm_adapters.gpu.system import SystemGpuProbe
from owm_adapters.gpu.tool import DEFAULT_TIMEOUT_S, GpuReading, ProbeProblem

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "NVIDIA_SMI_ARGS",
    "ROCM_SMI_ARGS",
    "FixedGpuProbe",
    "FixedHostProbe",
    "GpuReading",
    "LinuxHostProbe",
    "NvidiaSmiProbe",
    "ProbeProblem",
    "RocmSmiProbe",
    "SystemGpuProbe",
    "parse_meminfo_total_mb",
    "parse_nvidia_smi_csv",
    "parse_rocm_smi_json",
]
