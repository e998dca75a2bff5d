"""owm-mine's header hashers (SRS-NODE-13, SRS-POOL-03): the torch hasher, which runs on CUDA
when a GPU is found and on the CPU here, finds exactly the nonces the hashlib hasher finds,
including the nonces of real Bitcoin blocks; ``[mining] hasher`` picks one, and asking for
torch where it cannot be imported is a clear error."""

from __future__ import annotations

import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters import hashing
from owm_adapters.hashing import torch_sha256d
from owm_adapters.hashing.cpu import CpuHasher
from owm_adapters.hashing.select import hasher_for
from owm_adapters.hashing.torch_sha256d import TorchHasher
from owm_core.errors import HasherUnavailable, InvalidValue
from owm_core.pool.bitcoin import BlockHeader, compact_to_target

# Block 0 (genesis) and block 125,552 (the Bitcoin wiki's hashing example), as the chain has them.
GENESIS = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27a"
    "c72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)
GENESIS_HASH = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
BLOCK_125552 = bytes.fromhex(
    "01000000"
    + bytes.fromhex("00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81")[::-1].hex()
    + bytes.fromhex("2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3")[::-1].hex()
    + "c7f5d74d"  # time 1305998791
    + "f2b9441a"  # bits 0x1a44b9f2
    + "42a14695"  # nonce 2504433986
)
BLOCK_125552_HASH = "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d"

#: A small batch, so that a search crosses several batches and their edges.
TORCH = TorchHasher(batch=256)
CPU = CpuHasher()


@pytest.mark.parametrize(
    ("raw", "block_hash"),
    [(GENESIS, GENESIS_HASH), (BLOCK_125552, BLOCK_125552_HASH)],
    ids=["genesis", "block-125552"],
)
@pytest.mark.parametrize("hasher", [CPU, TORCH], ids=["cpu", "torch"])
def test_both_hashers_find_the_nonce_of_a_real_bitcoin_block_at_its_target(
    raw: bytes, block_hash: str, hasher: CpuHasher | TorchHasher
) -> None:
    header = BlockHeader.parse(raw)
    assert header.hash_hex() == block_hash
    target = compact_to_target(header.bits)
    found = hasher.search(raw[:76], header.nonce - 300, 600, target)
    assert found == [header.nonce]
    # with the block's own hash as the target the nonce still passes; one below, it does not
    exact = int(block_hash, 16)
    assert hasher.search(raw[:76], header.nonce, 1, exact) == [header.nonce]
    assert hasher.search(raw[:76], header.nonce, 1, exact - 1) == []


# Targets from "every hash passes" down to "about one nonce in 2**12 passes", so each example
# has hits to compare, and 0 (none pass).
targets = st.one_of(
    st.integers(244, 256).flatmap(lambda bits: st.integers(0, (1 << bits) - 1)), st.just(0)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.binary(min_size=76, max_size=76),
    start=st.integers(0, (1 << 32) - 1),
    count=st.integers(0, 1500),
    target=targets,
)
def test_the_torch_hasher_finds_exactly_the_nonces_the_cpu_hasher_finds(
    prefix: bytes, start: int, count: int, target: int
) -> None:
    found = TORCH.search(prefix, start, count, target)
    assert found == CPU.search(prefix, start, count, target)
    assert found == sorted(found) and all(start <= n < min(start + count, 1 << 32) for n in found)


def test_a_search_stops_at_the_last_nonce_and_takes_every_nonce_under_the_largest_target() -> None:
    prefix = bytes(76)
    everything = (1 << 256) - 1
    for hasher in (CPU, TORCH):
        assert hasher.search(prefix, (1 << 32) - 3, 10, everything) == [
            (1 << 32) - 3, (1 << 32) - 2, (1 << 32) - 1,
        ]  # fmt: skip
        assert hasher.search(prefix, 1 << 32, 10, everything) == []
        with pytest.raises(ValueError, match="76 bytes"):
            hasher.search(bytes(80), 0, 1, everything)


def test_the_torch_hasher_runs_on_cuda_when_torch_sees_a_gpu_and_on_the_cpu_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch_sha256d, "cuda_available", lambda: False)
    assert TorchHasher().name == "torch:cpu"
    assert TorchHasher().batch == torch_sha256d.BATCH["cpu"]
    monkeypatch.setattr(torch_sha256d, "cuda_available", lambda: True)
    assert TorchHasher().name == "torch:cuda"  # the device is only touched by a search
    assert TorchHasher().batch == torch_sha256d.BATCH["cuda"]


def test_a_device_fault_while_hashing_is_a_clear_error_the_miner_can_log_and_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(*_args: object) -> None:
        raise RuntimeError("CUDA error: out of memory\nCUDA kernel errors might be reported…")

    hasher = TorchHasher(batch=64)
    monkeypatch.setattr(hasher, "_sha256d", fail)
    with pytest.raises(HasherUnavailable, match=r"failed on cpu: CUDA error: out of memory$"):
        hasher.search(bytes(76), 0, 100, 1 << 255)


def test_the_hasher_setting_picks_cpu_torch_or_torch_on_a_gpu_only_when_there_is_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert hasher_for("cpu").name == "cpu"
    monkeypatch.setattr(torch_sha256d, "cuda_available", lambda: False)
    assert hasher_for("torch").name == "torch:cpu"
    assert hasher_for("auto").name == "cpu"
    monkeypatch.setattr(torch_sha256d, "cuda_available", lambda: True)
    assert hasher_for("auto").name == "torch:cuda"
    with pytest.raises(InvalidValue, match="cpu, torch, auto"):
        hasher_for("gpu")


def test_asking_for_torch_where_it_cannot_be_imported_is_a_clear_error_and_auto_uses_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # what a missing package looks like
    monkeypatch.delitem(sys.modules, "owm_adapters.hashing.torch_sha256d")
    monkeypatch.delattr(hashing, "torch_sha256d")
    with pytest.raises(HasherUnavailable, match=r'needs PyTorch.*choose the hasher "cpu"'):
        hasher_for("torch")
    assert hasher_for("auto").name == "cpu"
