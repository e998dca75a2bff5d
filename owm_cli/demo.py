"""``owm demo``: a guided tour of OWM's rules, computed live on this machine.

Nothing here is canned: every figure printed is computed by ``owm_core`` from this machine's
hardware, fresh keys and real Bitcoin data (the genesis block header). The demo composes
use cases and renders them; the rules themselves live in ``owm_core``.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click
import torch

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.gpu import LinuxHostProbe, SystemGpuProbe
from owm_adapters.provenance.ots import OpenTimestamps
from owm_adapters.provenance.ots_calendar import Calendar
from owm_core.errors import DomainError
from owm_core.fl import aggregation, anomaly, attacks
from owm_core.fl import participants as rounds
from owm_core.identity import envelopes
from owm_core.identity.keys import Identity
from owm_core.nodes import tiers
from owm_core.nodes.registry import LnNodeUri
from owm_core.payments import rewards
from owm_core.pool import bitcoin, fpps
from owm_core.provenance import versions as provenance
from owm_core.provenance.verification import verify_model_version
from owm_core.stake import channel as stake
from owm_core.stake import slashing

GENESIS_HEADER = bytes.fromhex(
    "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b2"
    "7ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c"
)


def _section(title: str) -> None:
    click.secho(f"\n== {title}", bold=True)


def _line(label: str, value: object) -> None:
    click.echo(f"  {label:<28} {value}")


@click.command()
@click.option("--bandwidth-mbps", default=100, show_default=True,
              help="Your uplink estimate, used for tier classification.")
def demo(bandwidth_mbps: int) -> None:
    """Tour the network's rules on this machine: tier, identity, stake, rewards, slashing,
    mining, robust federated learning and OpenTimestamps provenance."""
    now = int(time.time())

    _section("1. Hardware tier (SRS-NODE-03)")
    gpu_probe = SystemGpuProbe()
    devices = gpu_probe.devices()
    hardware = tiers.Hardware.from_devices(
        devices, ram_mb=LinuxHostProbe(bandwidth_mbps).ram_mb(), bandwidth_mbps=bandwidth_mbps
    )
    _line("GPUs", ", ".join(f"{d.name} ({d.vram_mb} MiB)" for d in devices) or "none (CPU only)")
    for problem in getattr(gpu_probe, "problems", []):
        _line("probe note", problem)
    _line("RAM", f"{hardware.ram_mb} MiB")
    try:
        tier = tiers.classify(hardware)
    except DomainError as exc:
        _line("tier", f"below the entry tier: {exc.message}; showing t1 rules")
        tier = tiers.Tier.T1
    else:
        _line("tier", tier.value)
    requirement = tiers.StakeRequirements().for_tier(tier)
    _line("stake minimum", f"{requirement.min_sats:,} sat channel to the treasury")

    _section("2. Identity and signed heartbeat (SRS-NODE-02/04, SRS-SEC-03)")
    node = Identity.from_seed(secrets.token_bytes(32))
    coordinator = Identity.from_seed(secrets.token_bytes(32))
    _line("node id", node.node_id)
    manifest = envelopes.CapabilityManifest(
        tier=tier, vram_mb=hardware.vram_mb, ram_mb=hardware.ram_mb,
        bandwidth_mbps=hardware.bandwidth_mbps, gpu_vendor=hardware.gpu_vendor.value,
        gpu_count=hardware.gpu_count,
    )
    heartbeat = envelopes.seal(
        node, envelopes.EnvelopeKind.HEARTBEAT,
        envelopes.Heartbeat(node_id=node.node_id, seq=1, manifest_digest=manifest.digest()),
        nonce=secrets.token_bytes(16), issued_at=now, audience=coordinator.public_key_hex,
    )
    wire = envelopes.to_bytes(heartbeat)
    envelopes.verify(envelopes.from_bytes(wire), audience=coordinator.public_key_hex)
    _line("heartbeat", f"{len(wire)} bytes, signature verifies at its coordinator")
    guard = envelopes.ReplayGuard()
    guard.accept(heartbeat, now)
    try:
        guard.accept(heartbeat, now + 1)
    except DomainError as exc:
        _line("replayed heartbeat", f"refused ({exc.message})")

    _section("3. Stake (SRS-STAKE-01/07/10)")
    ln_uri = LnNodeUri.parse("02" + secrets.token_bytes(32).hex() + "@127.0.0.1:9735")
    channel = stake.StakeChannel(
        channel_id="1", channel_point="ab" * 32 + ":0", peer_pubkey=ln_uri.pubkey,
        capacity_sat=requirement.min_sats * 4, local_balance_sat=0,
        remote_balance_sat=requirement.min_sats * 4, confirmations=3, active=True,
    )
    check = stake.check_stake(tier, [channel])
    record = stake.Stake.register(node.public_key_hex, check, now).verified(check, now)
    _line("channel", f"{channel.capacity_sat:,} sat, {channel.confirmations} confirmations")
    _line("stake status", record.status.value)
    _line("stake bonus", f"× {record.bonus_bps / 10_000:.2f} on every reward")

    _section("4. Reward for one verified task (SRS-LN-04)")
    base_msat = 50_000
    reward = rewards.task_reward_msat(base_msat, 900_000, record.bonus_bps)
    ledger = rewards.RewardLedger().earn(node.node_id, "task-1", reward)
    ledger = ledger.earn(node.node_id, "task-1", reward)  # a retried proof credits once
    _line("base × reliability × bonus", f"{base_msat} msat × 0.90 × {record.bonus_bps / 10_000}")
    _line("earned (task proved twice)", f"{ledger.account(node.node_id).earned_msat} msat")

    _section("5. Slashing: tier 1 needs 3 distinct reporters (SRS-STAKE-04)")
    policy = slashing.SlashingPolicy(
        maintainer_keys=frozenset(), coordinator_key=coordinator.public_key_hex
    )
    target = slashing.SlashingTarget(node_id=node.node_id, tier=tiers.Tier.T1, channel_id="1")
    evidence = envelopes.sha256_hex(b"poisoned update of round 7")
    reporters = [Identity.from_seed(secrets.token_bytes(32)).node_id for _ in range(3)]
    signals = [
        slashing.SlashingSignal(node_id=node.node_id, reporter=reporter,
                                reason=slashing.SlashingReason.POISONED_UPDATE,
                                evidence_hash=evidence, at=now)
        for reporter in reporters
    ]
    for count in (2, 3):
        verdict = policy.evaluate(target, signals[:count], [], now)
        _line(f"{count} distinct reporters", "slash" if verdict else "no decision")
    decision = policy.decide(target, signals, [], now)
    entry = slashing.append_to_log(coordinator, None, decision)
    _line("log entry", f"#{entry.index} {entry.entry_hash()[:16]}…, signed by the coordinator")
    _line("log verifies", slashing.verify_log([entry], coordinator.public_key_hex).ok)
    _line("stake after slashing", record.slashed(now).status.value)

    _section("6. Mining: the genesis block as a share (SRS-POOL-04, SRS-SEC-15)")
    header = bitcoin.BlockHeader.parse(GENESIS_HEADER)
    _line("block hash", header.hash_hex())
    template = bitcoin.WorkTemplate(template_id="genesis", prev_hash=header.prev_hash,
                                    bits=header.bits, height=0)
    accepted = bitcoin.validate_share(
        bitcoin.Share(miner_id=node.node_id, template_id="genesis", header=GENESIS_HEADER,
                      share_difficulty=1),
        template,
    )
    _line("valid share / block", f"{accepted.hash_hex[:16]}… / {accepted.is_block}")
    terms = fpps.FppsTerms.from_block(height=0, bits=header.bits)
    _line("FPPS value of one share", f"{fpps.share_value_sat(terms, 1):,} sat")

    _section("7. Robust federated learning: 12 clients, 3 of them poisoned (SRS-SEC-05)")
    _robust_round(now)

    _section("8. Provenance: the model version anchored with OpenTimestamps (SRS-NODE-10)")
    with tempfile.TemporaryDirectory(prefix="owm-demo-") as scratch:
        _anchor_a_model_version(Path(scratch), now)


def _anchor_a_model_version(scratch: Path, now: int) -> None:
    """Stamp a model version through a calendar into the embedded chain, then verify it."""
    weights = {"layer.weight": torch.linspace(-1.0, 1.0, 64).reshape(8, 8)}
    version = provenance.new_model_version("owm-v0.1.0", "owm-demo", weights, created_at=now)
    _line("model version", f"{version.id}, digest {version.digest[:16]}…")
    chain = LocalChain(scratch / "chain.sqlite3")
    calendar = Calendar(scratch / "calendar.sqlite3", chain)
    ots = OpenTimestamps(chain, provenance.Network.REGTEST, [calendar])
    pending = ots.stamp(version.digest_bytes)
    _line("calendar acknowledgement", ots.verify(pending, version.digest_bytes).status.value)
    calendar.flush()
    proof = ots.upgrade(pending)
    verdict = verify_model_version(version, proof, ots, weights=weights)
    when = datetime.fromtimestamp(verdict.block_time or 0, UTC).isoformat(timespec="seconds")
    _line("after the calendar's block", f"{verdict.status.value}: block {verdict.height}, {when}")
    _line(".ots proof", f"{len(proof)} bytes (standard OpenTimestamps format)")
    tampered = {"layer.weight": weights["layer.weight"] + 1e-3}
    refused = verify_model_version(version, proof, ots, weights=tampered)
    _line("tampered weights", f"refused: {refused.failure.value if refused.failure else '?'}")


def _robust_round(now: int) -> None:
    """One aggregation round with sign-flipping attackers: FedAvg against Krum, then the
    anomaly scores that turn the attackers into slashing signals."""
    generator = torch.Generator().manual_seed(7)
    n, byzantine, d = 12, 3, 100_000
    reference = torch.zeros(d)
    direction = torch.randn(d, generator=generator)
    honest = direction + 0.1 * torch.randn(n - byzantine, d, generator=generator)
    poisoned = attacks.poison(attacks.Attack.SIGNFLIP, reference=reference, honest=honest,
                              own=honest[:byzantine].clone(), generator=generator)
    updates = torch.cat([honest, poisoned])
    truth = honest.mean(dim=0)
    for rule in (aggregation.Rule.FEDAVG, aggregation.Rule.KRUM):
        f = 0 if rule is aggregation.Rule.FEDAVG else byzantine
        result = aggregation.aggregate(updates, rule, f)
        cosine = torch.nn.functional.cosine_similarity(result.update, truth, dim=0)
        _line(f"{rule.value} vs honest mean", f"cosine similarity {float(cosine):+.3f}")
    robust = aggregation.aggregate(updates, aggregation.Rule.KRUM, byzantine)
    scores = anomaly.score_updates(updates, robust.update)
    node_ids = [Identity.from_seed(bytes([i]) * 32).node_id for i in range(n)]
    evidence = [rounds.update_digest(row).hex() for row in updates]
    signals = anomaly.slashing_signals(scores, node_ids, evidence, reporter="owm-demo", now=now)
    flagged = sorted(s.index for s in scores if s.flagged)
    _line("flagged clients", f"{flagged} (the poisoned ones are {list(range(n - byzantine, n))})")
    _line("slashing signals", f"{len(signals)}, each with the evidence hash of its update")
