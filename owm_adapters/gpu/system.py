"""All the GPUs of this machine, whatever their vendor (SRS-NODE-03).

Owns :class:`SystemGpuProbe`, the :class:`~owm_core.ports.gpu.GpuProbe` that ``owm-node``
uses: it asks ``nvidia-smi`` and ``rocm-smi`` and merges their answers. On a CPU-only machine
neither tool exists and the answer is simply ``[]``, which classifies as t1.
"""

from __future__ import annotations

import attrs

from owm_adapters.gpu.nvidia import NvidiaSmiProbe
from owm_adapters.gpu.rocm import RocmSmiProbe
from owm_adapters.gpu.tool import DEFAULT_TIMEOUT_S, ProbeProblem
from owm_core.nodes.hardware import GpuDevice


@attrs.define
class SystemGpuProbe:
    """NVIDIA GPUs first, then AMD GPUs; a failing tool costs only its own vendor's GPUs.

    After :meth:`devices`, :attr:`problems` lists why a vendor's GPUs may be missing, for the
    operator (SRS-NODE-03); it is empty on a healthy machine and on a CPU-only one.
    """

    nvidia: NvidiaSmiProbe = attrs.field(factory=NvidiaSmiProbe)
    amd: RocmSmiProbe = attrs.field(factory=RocmSmiProbe)

    @classmethod
    def searching(
        cls, search_path: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SystemGpuProbe:
        """Both tools looked up on ``search_path`` (default ``$PATH``) with one time limit."""
        return cls(
            nvidia=NvidiaSmiProbe(search_path=search_path, timeout_s=timeout_s),
            amd=RocmSmiProbe(search_path=search_path, timeout_s=timeout_s),
        )

    @property
    def problems(self) -> list[ProbeProblem]:
        """What went wrong during the last :meth:`devices`, NVIDIA's first."""
        return [*self.nvidia.problems, *self.amd.problems]

    def devices(self) -> list[GpuDevice]:
        """All usable GPUs; [] on a CPU-only machine (never an error for 'no GPU')."""
        return [*self.nvidia.devices(), *self.amd.devices()]
