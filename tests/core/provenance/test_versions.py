"""The canonical model-version digest, the proof verdict values and the header judgement."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.pool.bitcoin import BlockHeader, compact_to_target
from owm_core.provenance.verification import verify_model_version
from owm_core.provenance.versions import (
    AttestationCheck,
    FailureReason,
    ModelVersion,
    Network,
    ProofStatus,
    Verification,
    canonical_serialisation,
    check_block_attestation,
    conclude,
    model_digest,
    new_model_version,
)

DIGEST = hashlib.sha256(b"x").digest()


# --------------------------------------------------------------------------- serialisation


def test_the_serialisation_is_exactly_the_documented_layout():
    weights = {"b": torch.tensor([[1, 2], [3, 4]], dtype=torch.int16), "a": torch.tensor(1.5)}
    meta = {"z": 1, "version": "owm-v0.1.0", "é": None}
    meta_json = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    meta_bytes = meta_json.encode()
    expected = (
        b"OWM-MODEL-V1\n"
        + struct.pack("<I", len(meta_bytes)) + meta_bytes
        + struct.pack("<I", 2)
        + struct.pack("<I", 1) + b"a" + struct.pack("<B", 7) + b"float32"
        + struct.pack("<I", 0) + struct.pack("<Q", 4) + struct.pack("<f", 1.5)
        + struct.pack("<I", 1) + b"b" + struct.pack("<B", 5) + b"int16"
        + struct.pack("<IQQ", 2, 2, 2) + struct.pack("<Q", 8) + struct.pack("<4h", 1, 2, 3, 4)
    )
    assert canonical_serialisation(weights, meta) == expected
    assert model_digest(weights, meta) == hashlib.sha256(expected).digest()
    assert '"é":null' in meta_json


def test_the_same_numbers_as_torch_or_numpy_have_the_same_digest():
    as_torch = {"w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "m": torch.tensor([True])}
    as_numpy = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "m": np.array([True])}
    assert model_digest(as_torch, {}) == model_digest(as_numpy, {})


def test_big_endian_arrays_are_hashed_as_little_endian():
    little = np.arange(5, dtype="<i4")
    big = little.astype(">i4")
    assert model_digest({"w": big}, {}) == model_digest({"w": little}, {})


def test_non_contiguous_and_bfloat16_tensors_are_hashed_by_value():
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert model_digest({"w": base.t()}, {}) == model_digest({"w": base.t().contiguous()}, {})
    half = torch.tensor([1.0, -2.0], dtype=torch.bfloat16)
    assert canonical_serialisation({"w": half}, {}).endswith(
        half.view(torch.int16).numpy().astype("<i2").tobytes())


def test_shape_and_dtype_are_part_of_the_digest():
    flat = torch.zeros(4)
    assert model_digest({"w": flat}, {}) != model_digest({"w": flat.reshape(2, 2)}, {})
    assert model_digest({"w": flat}, {}) != model_digest({"w": flat.double()}, {})


@settings(max_examples=30, deadline=None)
@given(
    values=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=16),
    index=st.integers(min_value=0),
    names=st.permutations(["encoder.w", "encoder.b", "head"]),
)
def test_insertion_order_never_matters_and_any_changed_element_changes_the_digest(
    values, index, names
):
    tensor = torch.tensor(values, dtype=torch.int32)
    weights = {name: tensor + i for i, name in enumerate(sorted(names))}
    shuffled = {name: weights[name] for name in names}
    assert model_digest(weights, {"a": 1, "b": 2}) == model_digest(shuffled, {"b": 2, "a": 1})
    changed = tensor.clone()
    changed[index % len(values)] ^= 1
    assert model_digest({"w": tensor}, {}) != model_digest({"w": changed}, {})


def test_floats_in_metadata_are_refused_because_their_text_is_not_canonical():
    with pytest.raises(InvalidValue, match=r"metadata\.lr"):
        model_digest({}, {"lr": 0.1})


def test_weights_must_be_named_tensors():
    with pytest.raises(InvalidValue, match="weights"):
        model_digest({"w": [1, 2]}, {})  # type: ignore[dict-item]
    with pytest.raises(InvalidValue, match="weights"):
        model_digest({"": torch.zeros(1)}, {})


# --------------------------------------------------------------------------- versions


def test_a_model_version_hashes_its_name_and_parent_with_the_weights():
    weights = {"w": torch.ones(3)}
    v1 = new_model_version("owm-v0.4.2", "owm-geo", weights, created_at=10)
    v2 = new_model_version("owm-v0.4.3", "owm-geo", weights, created_at=10, parent=v1.digest)
    assert v1.id == "owm-geo@owm-v0.4.2"
    assert v1.digest != v2.digest
    meta = {"version": "owm-v0.4.2", "sub_model": "owm-geo", "parent": None}
    assert v1.digest_bytes == model_digest(weights, meta)
    later = new_model_version("owm-v0.4.2", "owm-geo", weights, created_at=99)
    assert later.digest == v1.digest, "created_at is not hashed"


def test_version_names_and_digests_are_validated():
    with pytest.raises(InvalidValue, match="version"):
        ModelVersion(version="v1", sub_model="owm-geo", digest=DIGEST.hex(), created_at=0)
    with pytest.raises(InvalidValue, match="digest"):
        ModelVersion(version="owm-v1.0.0", sub_model="owm-geo", digest="AB" * 32, created_at=0)
    with pytest.raises(InvalidValue, match="metadata"):
        new_model_version("owm-v1.0.0", "owm-geo", {}, 0, extra_metadata={"version": "x"})


class FakeTimestamping:
    def __init__(self) -> None:
        self.asked: list[bytes] = []

    def verify(self, proof: bytes, digest: bytes) -> Verification:
        self.asked.append(digest)
        return Verification.confirmed(digest, 5, 1_700_000_000, "00" * 32)


def test_verify_model_version_refuses_tampered_weights_without_asking_the_chain():
    weights = {"w": torch.ones(3)}
    version = new_model_version("owm-v0.4.2", "owm-geo", weights, created_at=10)
    stamping = FakeTimestamping()
    assert verify_model_version(version, b"proof", stamping, weights).ok
    verdict = verify_model_version(version, b"proof", stamping, {"w": torch.ones(4)})
    assert verdict.failure is FailureReason.DIGEST_MISMATCH
    assert stamping.asked == [version.digest_bytes]
    assert verify_model_version(version, b"proof", stamping).height == 5


# --------------------------------------------------------------------------- verdicts


def test_a_verification_is_either_confirmed_or_failed():
    with pytest.raises(InvalidValue):
        Verification(digest=DIGEST.hex())
    with pytest.raises(InvalidValue):
        Verification(digest=DIGEST.hex(), height=1, failure=FailureReason.BAD_POW)
    assert Verification.failed(DIGEST, FailureReason.PENDING_ONLY, "").status is ProofStatus.PENDING
    assert Verification.failed(DIGEST, FailureReason.BAD_POW, "").status is ProofStatus.FAILED


def test_the_earliest_verified_block_wins_and_failures_are_ranked():
    good = [AttestationCheck(9, None, "", 900, "09" * 32), AttestationCheck(7, None, "", 700,
                                                                             "07" * 32)]
    unknown = AttestationCheck(12, FailureReason.UNKNOWN_BLOCK, "no 12")
    pow_ = AttestationCheck(3, FailureReason.BAD_POW, "weak")
    assert conclude(DIGEST, [*good, pow_], ["u"]).height == 7
    assert conclude(DIGEST, [unknown, pow_], ["u"]).failure is FailureReason.BAD_POW
    assert conclude(DIGEST, [unknown], []).failure is FailureReason.UNKNOWN_BLOCK
    assert conclude(DIGEST, [], ["https://a"]).failure is FailureReason.PENDING_ONLY
    assert conclude(DIGEST, [], []).failure is FailureReason.UNSUPPORTED


def _regtest_header(root: bytes) -> BlockHeader:
    for nonce in range(1000):
        header = BlockHeader(0x20000000, b"\0" * 32, root, 1_700_000_000, 0x207FFFFF, nonce)
        if header.meets_target(compact_to_target(header.bits)):
            return header
    raise AssertionError("unreachable at regtest difficulty")


def test_a_regtest_header_is_checked_for_hash_merkle_root_and_work():
    root = hashlib.sha256(b"root").digest()
    header = _regtest_header(root)
    raw = header.serialize()
    ok = check_block_attestation(4, root, header.hash_hex(), raw, Network.REGTEST)
    assert (ok.failure, ok.block_time) == (None, 1_700_000_000)
    assert check_block_attestation(4, root[::-1], header.hash_hex(), raw,
                                   Network.REGTEST).failure is FailureReason.BAD_HEADER
    assert check_block_attestation(4, root, "11" * 32, raw,
                                   Network.REGTEST).failure is FailureReason.BAD_HEADER
    assert check_block_attestation(4, root, header.hash_hex(), raw[:79],
                                   Network.REGTEST).failure is FailureReason.BAD_HEADER
    assert check_block_attestation(4, root, header.hash_hex(), raw,
                                   Network.MAIN).failure is FailureReason.BAD_POW


def test_networks_are_named_as_bitcoind_names_them():
    assert Network.from_name("main") is Network.MAIN
    assert Network.from_name("testnet4") is Network.TESTNET
    assert Network.from_name("regtest") is Network.REGTEST
    with pytest.raises(InvalidValue):
        Network.from_name("dogecoin")


def test_the_standalone_script_in_the_verification_guide_computes_the_same_digest():
    guide = Path(__file__).resolve().parents[3] / "docs" / "ots-verification.md"
    script = guide.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(script, namespace)  # the documented recipe, exactly as users copy it
    weights = {
        "é.w": torch.arange(6, dtype=torch.float64).reshape(2, 3),
        "b": torch.tensor([True, False]),
        "half": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
    }
    meta = {"version": "owm-v0.4.2", "sub_model": "owm-geo", "parent": None, "ñ": [1, "x"]}
    as_numpy = {
        "é.w": weights["é.w"].numpy(), "b": weights["b"].numpy(),
        "half": weights["half"].view(torch.int16).numpy(),
    }
    digest = namespace["owm_model_digest"](as_numpy, meta, {"half": "bfloat16"})  # type: ignore[operator]
    assert digest == model_digest(weights, meta).hex()
