"""The coordinator's FL rounds, in process: tasks out, signed updates in, robust aggregation,
anomaly signals, accuracy, an OTS-stamped release and its weights file."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import attrs
import numpy as np
import pytest

from owm_adapters.models.tinynet import PARAM_SHAPES, genesis_weights
from owm_adapters.services.fl_rounds import evaluate, flat_weights
from owm_core.errors import Conflict, InvalidTransition, InvalidValue, NotFound
from owm_core.fl.attacks import Attack
from owm_core.fl.rounds import MAX_REJECTIONS, RoundState
from owm_core.fl.updates import sign_update
from owm_core.identity.keys import Identity
from owm_core.market.task_types import validate_input
from owm_core.nodes.tiers import Tier
from owm_core.provenance.verification import verify_model_version
from owm_core.provenance.versions import ProofStatus
from owm_core.stake.slashing import SlashingPolicy, SlashingReason, SlashingTarget
from tests.services.fl_world import UPLOAD_URL, FlWorld, build_fl_world, count_decodes


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FlWorld]:
    world = build_fl_world(tmp_path)
    yield world
    world.provenance.stop()


def test_a_round_submits_one_valid_fl_training_task_carrying_the_global_model(
    world: FlWorld,
) -> None:
    fl_round = world.start_round()
    assert fl_round.state is RoundState.OPEN and fl_round.base_version == "genesis"
    (group,) = fl_round.task_ids
    replicas, outcome = world.coordinator.task(group)
    assert len(replicas) == 4 and outcome == "pending"
    assert {r.request.task_type for r in replicas} == {"fl_training"}
    raw = world.stored_input(group)
    assert raw is not None
    _schema, data = validate_input("fl_training", "owm.fl.train", 1, raw)
    assert data["upload_url"] == UPLOAD_URL and data["round"] == fl_round.number
    expected = flat_weights(genesis_weights("owm-base"))
    assert np.array_equal(np.asarray(data["global_weights"], dtype=np.float32), expected)
    assert world.fl.maybe_start() is None  # one open round at a time


def test_no_round_starts_without_enough_trainers_or_an_upload_url(tmp_path: Path) -> None:
    few = build_fl_world(tmp_path / "few", min_participants=5)
    assert few.fl.maybe_start() is None  # 4 trainers, 5 needed
    nourl = build_fl_world(tmp_path / "nourl")
    nourl.fl.upload_url = ""
    assert nourl.fl.maybe_start() is None
    assert few.repos.fl_rounds.rounds() == [] and nourl.repos.fl_rounds.rounds() == []


def test_honest_rounds_publish_stamped_versions_whose_accuracy_improves(world: FlWorld) -> None:
    genesis_accuracy, _ = evaluate(flat_weights(genesis_weights("owm-base")))
    first = world.honest_round()
    world.fl.tick()  # three of the four assigned nodes uploaded, the task is pending: not due
    assert world.repos.fl_rounds.get_round(first.number).state is RoundState.OPEN  # type: ignore[union-attr]
    closed = world.fl.close_round(first.number)
    assert closed.state is RoundState.CLOSED and closed.participants == 3
    assert closed.flagged == () and world.signals == []
    assert closed.accuracy_ppm is not None and closed.accuracy_ppm > genesis_accuracy
    second = world.honest_round()
    assert second.base_version == closed.version_id
    closed2 = world.fl.close_round(second.number)
    assert closed2.accuracy_ppm is not None and closed2.accuracy_ppm > closed.accuracy_ppm
    release = world.repos.releases.get(str(closed2.version_id))
    assert release is not None and release.proof_status is ProofStatus.PENDING
    parent = world.repos.releases.get(str(closed.version_id))
    assert parent is not None and release.version.parent == parent.version.digest
    with np.load(io.BytesIO(world.fl.weights_file(release.release_id))) as npz:
        weights = {name: npz[name] for name, _ in PARAM_SHAPES}
        assert str(npz["__version__"]) == release.version.version
    world.provenance.flush()
    changed = world.fl.upgrade_proofs()  # both rounds' releases: pick the second's
    (upgraded,) = [r for r in changed if r.release_id == release.release_id]
    assert upgraded.proof_status is ProofStatus.CONFIRMED
    assert upgraded.ots_proof is not None
    verdict = verify_model_version(upgraded.version, upgraded.ots_proof, world.provenance, weights)
    assert verdict.ok


def test_a_round_closes_by_itself_once_every_replica_uploaded(world: FlWorld) -> None:
    fl_round = world.honest_round(nodes=4)
    world.fl.tick()
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and stored.state is RoundState.CLOSED


def test_a_poisoned_update_is_flagged_and_signalled_and_the_model_still_learns(
    world: FlWorld,
) -> None:
    fl_round = world.honest_round(nodes=3)
    attacker = world.nodes[3]
    world.fl.accept_update(world.poisoned_body(fl_round, attacker, Attack.SIGNFLIP))
    closed = world.fl.close_round(fl_round.number)
    assert closed.flagged == (attacker.node_id,) and closed.f == 1
    # One signal per honest participant: the nodes whose updates exposed it report it.
    assert sorted(s.reporter for s in world.signals) == sorted(n.node_id for n in world.nodes[:3])
    signal = world.signals[0]
    assert {s.node_id for s in world.signals} == {attacker.node_id}
    assert signal.reason is SlashingReason.POISONED_UPDATE
    stored = {u.node_id: u for u in world.repos.fl_rounds.updates(fl_round.number)}
    assert stored[attacker.node_id].flagged and signal.evidence_hash == (
        stored[attacker.node_id].update.statement.hex()
    )
    assert not any(stored[n.node_id].flagged for n in world.nodes[:3])
    genesis_accuracy, _ = evaluate(flat_weights(genesis_weights("owm-base")))
    assert closed.accuracy_ppm is not None and closed.accuracy_ppm > genesis_accuracy


def test_a_node_poisoning_rounds_is_reported_by_three_stake_backed_peers_enough_for_tier_1(
    world: FlWorld,
) -> None:
    attacker = world.nodes[3]
    for _ in range(3):
        fl_round = world.honest_round(nodes=3)
        world.fl.accept_update(world.poisoned_body(fl_round, attacker, Attack.SIGNFLIP))
        world.fl.close_round(fl_round.number)

    assert {s.node_id for s in world.signals} == {attacker.node_id}
    assert len({s.reporter for s in world.signals}) == 3
    target = SlashingTarget(node_id=attacker.node_id, tier=Tier.T1, channel_id="1x2x3")
    policy = SlashingPolicy(maintainer_keys=frozenset(), coordinator_key="0c" * 32)
    now = world.clock.now()
    assert policy.decide(target, world.signals, (), now).reason is SlashingReason.POISONED_UPDATE
    assert policy.evaluate(target, world.signals[:2], (), now) is None


def test_uploads_are_idempotent_and_a_second_different_update_conflicts(world: FlWorld) -> None:
    fl_round = world.start_round()
    out = world.trained(fl_round)
    body = world.body(fl_round, world.nodes[0], out["weights"], out)
    first = world.fl.accept_update(body)
    again = world.fl.accept_update(json.loads(json.dumps(body)))
    assert not first.duplicate and again.duplicate and again.digest == first.digest
    changed = world.body(fl_round, world.nodes[0], [w * 0.5 for w in out["weights"]], out)
    with pytest.raises(Conflict):
        world.fl.accept_update(changed)
    assert len(world.repos.fl_rounds.updates(fl_round.number)) == 1


def test_an_upload_for_someone_elses_task_or_a_closed_round_is_refused_and_a_proven_one_recorded(
    world: FlWorld,
) -> None:
    fl_round = world.start_round()
    out = world.trained(fl_round)
    stranger = world.nodes[4]  # holds no replica
    body = world.body(fl_round, world.nodes[0], out["weights"], out)
    forged = sign_update(
        stranger, round_number=fl_round.number, sub_model="owm-base",
        task_id=body["task_id"], num_examples=64, loss=0.5, weights=out["weights"],
    )
    with pytest.raises(InvalidTransition):
        world.fl.accept_update(forged)
    short = world.body(fl_round, world.nodes[1], out["weights"][:-1], out)
    with pytest.raises(InvalidValue) as err:
        world.fl.accept_update(short)
    assert err.value.field == "weights"
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    # The stranger's upload was refused on its claim, before its signature was checked:
    # nothing proves who sent it, so only the assigned node's refused upload is recorded.
    assert stored is not None and len(stored.rejected) == 1
    assert stored.rejected[0].startswith(world.nodes[1].node_id)
    unknown_round = sign_update(
        world.nodes[0], round_number=99, sub_model="owm-base", task_id=body["task_id"],
        num_examples=64, loss=0.5, weights=out["weights"],
    )
    with pytest.raises(NotFound):
        world.fl.accept_update(unknown_round)
    world.fl.close_round(fl_round.number)  # no updates: fails
    with pytest.raises(InvalidTransition):
        world.fl.accept_update(body)


def test_a_round_with_too_few_updates_fails_at_its_timeout(world: FlWorld) -> None:
    fl_round = world.honest_round(nodes=2)
    world.fl.tick()
    assert world.repos.fl_rounds.get_round(fl_round.number).state is RoundState.OPEN  # type: ignore[union-attr]
    world.clock.advance(world.fl.config.round_timeout_s)
    world.fl.tick()
    failed = world.repos.fl_rounds.get_round(fl_round.number)
    assert failed is not None and failed.state is RoundState.FAILED
    assert "2 update(s) arrived, 3 needed" in failed.failure
    assert world.repos.releases.list() == []


def test_a_round_whose_sub_model_left_the_rotation_fails_at_its_close(world: FlWorld) -> None:
    """A coordinator restarted with another ``[fl]`` rotation finds an open round of a
    sub-model it no longer trains: the round fails when it is due instead of raising at every
    close, open for good, while no other round may start."""
    fl_round = world.honest_round(nodes=3)
    kept = {k: v for k, v in world.fl.models.by_name.items() if k != fl_round.sub_model}
    world.fl.models = attrs.evolve(world.fl.models, by_name=kept)
    failed = world.fl.close_round(fl_round.number)
    assert failed.state is RoundState.FAILED
    assert f"no longer train {fl_round.sub_model}" in (failed.failure or "")
    assert world.repos.fl_rounds.get_round(fl_round.number) == failed


def test_an_upload_no_open_round_expects_from_its_key_is_refused_without_decoding_its_weights(
    world: FlWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = count_decodes(monkeypatch)
    fl_round = world.start_round()
    out = world.trained(fl_round)
    honest = world.body(fl_round, world.nodes[0], out["weights"], out)
    stranger = world.nodes[4]  # holds no replica
    junk = {**honest, "public_key": stranger.public_key_hex, "signature": "cd" * 64,
            "weights": [0.123456] * 100_000}  # fmt: skip
    with pytest.raises(InvalidTransition, match="not assigned"):
        world.fl.accept_update(junk)
    with pytest.raises(NotFound):
        world.fl.accept_update({**junk, "round": fl_round.number + 1})
    with pytest.raises(NotFound):
        world.fl.accept_update({**junk, "task_id": "fl-r9-00000000:0"})
    assert decoded == []
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and stored.rejected == ()
    assert not world.fl.accept_update(honest).duplicate
    assert len(decoded) == 1


def test_strangers_uploads_fill_no_rejection_slots_and_a_replica_holders_refusal_is_still_kept(
    world: FlWorld,
) -> None:
    """Any key with any task id used to add to the round's ``rejected`` list (the first 100
    are kept): a stranger could fill it and hide the refusals of the round's own nodes."""
    fl_round = world.start_round()
    out = world.trained(fl_round)
    task_id = world.body(fl_round, world.nodes[0], out["weights"], out)["task_id"]
    for i in range(MAX_REJECTIONS + 5):
        stranger = Identity.from_seed(i.to_bytes(4, "big") * 8)
        forged = sign_update(stranger, round_number=fl_round.number, sub_model="owm-base",
                             task_id=task_id if i % 2 else f"nope-{i}", num_examples=64,
                             loss=0.5, weights=out["weights"])  # fmt: skip
        with pytest.raises((InvalidTransition, NotFound)):
            world.fl.accept_update(forged)
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and stored.rejected == ()
    short = world.body(fl_round, world.nodes[1], out["weights"][:-1], out)
    with pytest.raises(InvalidValue):
        world.fl.accept_update(short)
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and len(stored.rejected) == 1
    assert stored.rejected[0].startswith(world.nodes[1].node_id)


def test_an_update_claiming_more_examples_than_its_task_assigned_is_refused_and_recorded(
    world: FlWorld,
) -> None:
    """The round records what its task gave each replica (64 blob points here); FedAvg and
    Multi-Krum weigh updates by ``num_examples``, so a claim above it is refused (SRS-SEC-05)."""
    fl_round = world.start_round()
    assert fl_round.max_examples == 64
    out = world.trained(fl_round)
    assert out["num_examples"] == 64  # what an honest node reports
    inflated = world.body(fl_round, world.nodes[0], out["weights"],
                          {**out, "num_examples": 10**9})  # fmt: skip
    with pytest.raises(InvalidValue) as err:
        world.fl.accept_update(inflated)
    assert err.value.field == "num_examples"
    stored = world.repos.fl_rounds.get_round(fl_round.number)
    assert stored is not None and stored.participants == 0
    assert stored.rejected[0].startswith(world.nodes[0].node_id)
    assert "at most 64" in stored.rejected[0]
    assert list(world.repos.fl_rounds.updates(fl_round.number)) == []
    world.fl.accept_update(world.body(fl_round, world.nodes[0], out["weights"], out))
