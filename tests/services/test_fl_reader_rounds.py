"""FL rounds train a sub-model's reader adapter (``minilm-lora``) on its contributed documents,
through the market path of TinyNet's rounds: the task carries the adapter and training pairs,
the node trains with its own worker code, signed uploads are aggregated robustly, a poisoned
adapter update is flagged, the version is stamped and a node installs it only once its proof
verifies (SRS-COORD-03, SRS-SEC-05, SRS-NODE-10)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from owm_adapters.bootstrap.api import fl_reader_versions
from owm_adapters.bootstrap.settings import load_coordinator_settings
from owm_adapters.knowledge import demo_data
from owm_adapters.models import reader_rounds
from owm_adapters.models.architectures import MINILM_LORA, architecture, size
from owm_adapters.models.reader.layout import layout
from owm_adapters.models.reader.version import parse_version
from owm_adapters.node.task_exec import load_weights, run_training
from owm_adapters.node.weights import CachedModelRuntime, install_weights_file
from owm_adapters.services.fl_rounds import FlConfig
from owm_core.errors import InvalidValue
from owm_core.fl.attacks import Attack, poison
from owm_core.fl.rounds import RoundState
from owm_core.fl.updates import MAX_PARAMETERS
from owm_core.knowledge.datasets import parse_dataset, record_for
from owm_core.market.task_types import MAX_INPUT_BYTES, validate_input
from owm_core.provenance.versions import ProofStatus
from owm_server.http.app import MAX_BODY_BYTES
from tests.services.fl_world import FlWorld, build_fl_world

T0 = 1_800_000_000


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FlWorld:
    # Few pairs a round and few held-out pairs: the path is the same, the CPU bill small.
    monkeypatch.setattr(reader_rounds, "PAIRS_PER_ROUND", 4)
    monkeypatch.setattr(reader_rounds, "HOLDOUT_PAIRS", 4)
    return build_fl_world(tmp_path, model=MINILM_LORA, sub_models=("owm-history", "owm-geo"),
                          lr=0.005, epochs=1)


def contribute(world: FlWorld, sub_model: str) -> None:
    raw = (Path(demo_data.__file__).parent / f"{sub_model}.json").read_bytes()
    dataset = parse_dataset(raw)
    record = record_for(dataset, "alice", T0, 1, None)
    world.repos.datasets.add(record, dataset.documents[:10])


def test_a_sub_model_without_documents_waits_while_one_with_documents_trains(
    world: FlWorld,
) -> None:
    assert world.fl.maybe_start() is None  # no sub-model has training pairs yet
    contribute(world, "owm-geo")
    fl_round = world.start_round()  # owm-history's turn, but it has no pairs: owm-geo trains
    assert fl_round.sub_model == "owm-geo" and fl_round.number == 1
    data = world.task_input(fl_round)
    assert data["model"] == MINILM_LORA and len(data["pairs"]) == 4
    assert len(data["global_weights"]) == size(architecture(MINILM_LORA))
    raw = world.stored_input(fl_round.task_ids[0])
    assert raw is not None
    validate_input("fl_training", "owm.fl.train", 1, raw)  # what the node checks first
    assert len(raw) < MAX_INPUT_BYTES // 8


def test_a_reader_round_aggregates_flags_the_poisoner_stamps_installs_and_serves_the_adapter(
    world: FlWorld, tmp_path: Path
) -> None:
    contribute(world, "owm-geo")
    fl_round = world.start_round()
    data = world.task_input(fl_round)
    out = run_training(data, None)  # the node's worker code, on the task's own input
    assert out["base_version"] == "input" and out["num_examples"] == 4
    assert len(out["weights"]) == size(architecture(MINILM_LORA)) < MAX_PARAMETERS
    for node in world.nodes[:3]:  # honest replicas trained the same pairs from the same start
        body = world.body(fl_round, node, out["weights"], out)
        assert len(json.dumps(body).encode()) < MAX_BODY_BYTES
        world.fl.accept_update(body)
    attacker = world.nodes[3]
    own = torch.tensor(out["weights"], dtype=torch.float32)
    start = torch.tensor(data["global_weights"], dtype=torch.float32)
    bad = poison(Attack.SIGNFLIP, reference=start, honest=own[None, :], own=own[None, :],
                 generator=torch.Generator().manual_seed(5))
    world.fl.accept_update(world.body(fl_round, attacker, bad[0], out))

    closed = world.fl.close_round(fl_round.number)

    assert closed.state is RoundState.CLOSED and closed.participants == 4
    assert closed.flagged == (attacker.node_id,) and closed.accuracy_ppm is not None
    assert {s.node_id for s in world.signals} == {attacker.node_id}
    release = world.repos.releases.get(str(closed.version_id))
    assert release is not None and release.version.sub_model == "owm-geo"
    raw = world.fl.weights_file(release.release_id)
    with np.load(io.BytesIO(raw)) as npz:
        names = {n for n in npz.files if not n.startswith("__")}
        aggregated = np.concatenate([npz[n].reshape(-1) for n, _ in layout()])
    assert names == {n for n, _ in layout()}
    assert np.allclose(aggregated, np.asarray(out["weights"], dtype=np.float32))  # poison trimmed

    # The coordinator's query path reads with the newest trained adapter of each sub-model.
    served = fl_reader_versions(world.fl)
    assert served("owm-history") is None  # no round of it yet: the BM25 reader answers
    found = served("owm-geo")
    assert found is not None and found[0] == release.release_id
    parsed = parse_version(found[1])
    assert parsed.sub_model == "owm-geo"
    assert np.array_equal(np.concatenate([a.reshape(-1) for a in parsed.arrays]), aggregated)

    runtime = CachedModelRuntime(tmp_path / "models")
    assert release.ots_proof is not None
    pending = install_weights_file(runtime, world.provenance, release.version, raw,
                                   "adapter.npz", release.ots_proof)
    assert not pending.installed and pending.retry  # only pending: nothing is loaded
    world.provenance.flush()
    (upgraded,) = [r for r in world.fl.upgrade_proofs() if r.release_id == release.release_id]
    assert upgraded.proof_status is ProofStatus.CONFIRMED and upgraded.ots_proof is not None
    outcome = install_weights_file(runtime, world.provenance, release.version, raw,
                                   "adapter.npz", upgraded.ots_proof)
    assert outcome.installed, outcome.reason
    version, tensors = load_weights(str(runtime.model_dir), "owm-geo",
                                    architecture(MINILM_LORA))
    assert version == release.version.version and set(tensors) == names


@pytest.mark.parametrize(("options", "field"), [
    ({"model": "gpt-9"}, "fl.model"),
    ({"sub_models": ("owm-geo", "owm-geo")}, "fl.sub_models"),
    ({"sub_models": ("Owm Geo",)}, "fl.sub_models"),
    ({"models": {"owm-geo": "gpt-9"}}, "fl.models.owm-geo"),
])
def test_an_unknown_architecture_or_a_bad_sub_model_list_is_refused_naming_the_setting(
    options: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        FlConfig(**options)
    assert caught.value.field == field


def test_rounds_take_turns_over_the_sub_models_that_have_documents(world: FlWorld) -> None:
    contribute(world, "owm-geo")
    contribute(world, "owm-history")
    first = world.start_round()
    world.fl.close_round(first.number)  # no uploads: the round fails, the turn passes on
    second = world.start_round()
    assert (first.sub_model, second.sub_model) == ("owm-history", "owm-geo")


def test_each_sub_model_trains_the_architecture_its_setting_names(tmp_path: Path) -> None:
    toml = tmp_path / "coordinator.toml"
    toml.write_text('[fl]\nsub_models = ["owm-base", "owm-geo"]\nmodel = "tinynet"\n'
                    '[fl.models]\nowm-geo = "minilm-lora"\n')
    section = load_coordinator_settings(toml, environ={}).fl
    world = build_fl_world(tmp_path / "world", sub_models=section.sub_models,
                           model=section.model, models=section.models)
    contribute(world, "owm-geo")
    first = world.start_round()
    world.fl.close_round(first.number)  # no uploads: it fails, the turn passes on
    second = world.start_round()
    inputs = world.task_input(first), world.task_input(second)
    assert [(r.sub_model, i["model"]) for r, i in zip((first, second), inputs, strict=True)] == [
        ("owm-base", "tinynet"), ("owm-geo", MINILM_LORA)]
    assert "pairs" not in inputs[0] and len(inputs[1]["pairs"]) > 0
    assert len(inputs[0]["global_weights"]) == size(architecture("tinynet"))
    assert len(inputs[1]["global_weights"]) == size(architecture(MINILM_LORA))
