"""Task verification as a slashing reporter: which lost verifications raise fake_proof signals."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.identity.keys import Identity
from owm_core.market.tasks import (
    Task,
    TaskRequest,
    TaskState,
    VerificationMode,
    VerificationPolicy,
    record_verdict,
    settle,
    verify_outcome,
)
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingReason, fake_proof_signal

NODES = [Identity.from_seed(bytes([i + 1]) * 32).node_id for i in range(5)]
PROOF = hashlib.sha256(b"the signed proof envelope").hexdigest()
NOW = 1_800_000_000


def h(label: int) -> str:
    return hashlib.sha256(bytes([label])).hexdigest()


def request(task_id: str) -> TaskRequest:
    return TaskRequest(
        task_id=task_id, task_type="inference", input_schema_id="owm.inference.text",
        input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
        gpu_required=False, max_price_msat=10_000,
    )  # fmt: skip


def judged_redundantly(outputs: list[int]) -> list[Task]:
    """Replicas t:0..k-1 completed with ``outputs`` by NODES[i], after verdict and settlement."""
    policy = VerificationPolicy(mode=VerificationMode.REDUNDANT, redundancy=len(outputs))
    done = [
        Task(request(f"t:{i}"), TaskState.COMPLETED, NODES[i], 1_000, None, h(out))
        for i, out in enumerate(outputs)
    ]
    verdict = verify_outcome(policy, "t", {t.node_id or "": t.output_hash or "" for t in done},
                             seed=b"s")  # fmt: skip
    return [settle(record_verdict(t, verdict))[0] for t in done]


def test_a_node_in_the_minority_of_a_redundant_verification_is_reported_for_a_fake_proof() -> None:
    replicas = judged_redundantly([1, 1, 2])
    signal = fake_proof_signal("t", replicas, NODES[2], PROOF, NOW)
    assert signal is not None
    assert (signal.reason, signal.evidence_hash, signal.reporter) == (
        SlashingReason.FAKE_PROOF, PROOF, "verify:t",
    )  # fmt: skip
    assert fake_proof_signal("t", replicas, NODES[0], PROOF, NOW) is None


def test_without_a_majority_nobody_is_reported_since_nobody_can_tell_who_lied() -> None:
    replicas = judged_redundantly([1, 2, 3])
    assert all(r.state is TaskState.FORFEITED for r in replicas)
    assert all(fake_proof_signal("t", replicas, n, PROOF, NOW) is None for n in NODES[:3])


def test_a_spot_check_that_disagrees_reports_the_checked_node() -> None:
    main = Task(request("t:0"), TaskState.FORFEITED, NODES[0], 1_000, None, h(1))
    check = Task(request("t:check"), TaskState.SETTLED, NODES[1], 1_000, None, h(2))
    signal = fake_proof_signal("t", [main, check], NODES[0], PROOF, NOW)
    assert signal is not None and signal.node_id == NODES[0]
    assert fake_proof_signal("t", [main, check], NODES[1], PROOF, NOW) is None


@settings(max_examples=150)
@given(outputs=st.lists(st.integers(1, 3), min_size=1, max_size=5))
def test_exactly_the_nodes_that_disagree_with_a_strict_majority_are_reported(
    outputs: list[int],
) -> None:
    replicas = judged_redundantly(outputs)
    majority = [o for o in set(outputs) if outputs.count(o) * 2 > len(outputs)]
    for i, out in enumerate(outputs):
        reported = fake_proof_signal("t", replicas, NODES[i], PROOF, NOW) is not None
        assert reported == (bool(majority) and out != majority[0])
