"""Domain records the API tests put into the store directly (what other subsystems write)."""

from __future__ import annotations

import hashlib
from fractions import Fraction

from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import RewardPayment
from owm_core.pool.bitcoin import AcceptedShare
from owm_core.pool.stats import MiningPayout
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus
from owm_core.stake.slashing import (
    SlashingDecision,
    SlashingLogEntry,
    SlashingReason,
    append_to_log,
)

COORDINATOR = Identity.from_seed(b"\x07" * 32)
PROOF = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94\x01"


def release(
    version: str, at: int, status: ProofStatus = ProofStatus.CONFIRMED, sub_model: str = "owm-geo"
) -> ModelRelease:
    digest = hashlib.sha256(f"{sub_model}@{version}".encode()).hexdigest()
    proof = None if status is ProofStatus.NONE else PROOF + digest.encode()
    return ModelRelease(ModelVersion(version, sub_model, digest, at), status, at, proof)


def share(i: int, miner_id: str, difficulty: int = 1_000, is_block: bool = False) -> AcceptedShare:
    return AcceptedShare(miner_id, difficulty, Fraction(difficulty), f"{i:064x}", is_block)


def payout(i: int, at: int, miner_id: str | None, amount_sat: int = 12_000) -> MiningPayout:
    return MiningPayout(at, amount_sat, f"{i + 0xABC:064x}", miner_id)


def payment(i: int, node_id: str, at: int) -> RewardPayment:
    return RewardPayment(
        payment_id=f"pay-{i}", task_id=f"task-{i}", node_id=node_id, amount_msat=30_000 + i,
        payment_hash=f"{i:064x}", created_at=at, updated_at=at,
    )  # fmt: skip


def slashing_entry(previous: SlashingLogEntry | None, node_id: str, at: int) -> SlashingLogEntry:
    decision = SlashingDecision(
        node_id=node_id, channel_id="800000x1x0", tier=Tier.T1, reason=SlashingReason.FAKE_PROOF,
        evidence_hash="ab" * 32, decided_at=at, supporters=("a", "b", "c"),
    )  # fmt: skip
    return append_to_log(COORDINATOR, previous, decision)
