"""Which header hasher owm-mine uses: ``[mining] hasher`` / ``owm-mine run --hasher``
(SRS-NODE-13, SRS-POOL-03).

``cpu`` is ``hashlib``; ``torch`` is the tensor hasher, on CUDA when a GPU is available at run
time and on the CPU otherwise; ``auto`` is torch on a CUDA GPU when there is one, else ``cpu``
(torch on a CPU is slower than ``hashlib``). Asking for torch where it is not installed is a
clear error, not a silent fall back to the CPU.
"""

from __future__ import annotations

from owm_adapters.hashing.cpu import CpuHasher
from owm_core.errors import HasherUnavailable, InvalidValue
from owm_core.ports.hasher import HeaderHasher

HASHERS = ("cpu", "torch", "auto")


def hasher_for(name: str) -> HeaderHasher:
    """The hasher ``name`` (one of :data:`HASHERS`) stands for on this machine."""
    if name not in HASHERS:
        raise InvalidValue("hasher", f"must be one of {', '.join(HASHERS)}, not {name!r}")
    if name == "cpu":
        return CpuHasher()
    try:
        from owm_adapters.hashing import torch_sha256d
    except ImportError as error:
        if name == "auto":
            return CpuHasher()
        raise HasherUnavailable(
            'hasher "torch" needs PyTorch, which cannot be imported here '
            f'({error.msg}); install torch or choose the hasher "cpu"'
        ) from error
    if name == "auto" and not torch_sha256d.cuda_available():
        return CpuHasher()
    return torch_sha256d.TorchHasher()
