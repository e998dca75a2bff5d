"""owm-mine's header hashers behind :class:`owm_core.ports.hasher.HeaderHasher` (SRS-NODE-13,
SRS-POOL-03): ``hashlib`` on the CPU (:mod:`.cpu`) and SHA-256d over tensors of nonces with
torch, on CUDA when a GPU is found at run time (:mod:`.torch_sha256d`); :func:`.select.hasher_for`
picks one by the ``[mining] hasher`` setting."""
