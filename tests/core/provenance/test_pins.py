"""One sub-model version per task: which version a task is pinned to, and that every replica of
it carries that one pin wherever it is dispatched (SRS-SEC-11, SRS-NODE-10)."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.storage.memory import memory_repositories
from owm_core.coordination.tasks import replica_ids, submit_task
from owm_core.errors import InvalidValue
from owm_core.market.tasks import (
    GENESIS_VERSION,
    TaskRequest,
    TaskState,
    VerificationMode,
    VerificationPolicy,
    time_out,
)
from owm_core.nodes.tiers import Tier
from owm_core.provenance.releases import ModelRelease, pinned_version, weights_sub_model
from owm_core.provenance.versions import ModelVersion, ProofStatus

STATUSES = list(ProofStatus)


def release(version: str, status: ProofStatus, sub_model: str = "owm-base",
            created_at: int = 1_800_000_000) -> ModelRelease:
    model = ModelVersion(version=version, sub_model=sub_model, digest="ab" * 32,
                         created_at=created_at)
    proof = None if status is ProofStatus.NONE else b"proof"
    return ModelRelease(model, status, created_at, proof)


def everything(_release_id: str) -> bool:
    return True


def test_a_task_is_pinned_to_the_newest_release_the_coordinator_holds_as_confirmed() -> None:
    releases = [
        release("owm-v0.1.0", ProofStatus.CONFIRMED),
        release("owm-v0.2.0", ProofStatus.CONFIRMED),
        release("owm-v0.3.0", ProofStatus.PENDING),  # some node may hold it; not every node can
        release("owm-v0.9.0", ProofStatus.CONFIRMED, sub_model="owm-geo"),
    ]
    assert pinned_version(releases, "owm-base", everything) == "owm-v0.2.0"
    assert pinned_version(releases, "owm-geo", everything) == "owm-v0.9.0"


def test_without_a_confirmed_release_with_weights_a_task_is_pinned_to_genesis() -> None:
    pending = [release("owm-v0.1.0", ProofStatus.PENDING),
               release("owm-v0.2.0", ProofStatus.FAILED)]
    assert pinned_version(pending, "owm-base", everything) == GENESIS_VERSION
    confirmed = [release("owm-v0.1.0", ProofStatus.CONFIRMED)]
    assert pinned_version(confirmed, "owm-base", lambda _id: False) == GENESIS_VERSION
    assert pinned_version([], "owm-base", everything) == GENESIS_VERSION


@given(
    releases=st.lists(
        st.builds(
            lambda minor, status, sub: release(f"owm-v0.{minor}.0", status, sub),
            st.integers(0, 30), st.sampled_from(STATUSES), st.sampled_from(["owm-base", "x"]),
        ),
        max_size=12,
        unique_by=lambda r: r.release_id,
    ),
    published=st.sets(st.integers(0, 30)),
)
def test_the_pin_is_genesis_or_a_confirmed_published_release_and_none_newer_qualifies(
    releases: list[ModelRelease], published: set[int]
) -> None:
    def has_weights(release_id: str) -> bool:
        return int(release_id.split("@owm-v0.")[1].split(".")[0]) in published

    pin = pinned_version(releases, "owm-base", has_weights)
    usable = [r for r in releases if r.version.sub_model == "owm-base"
              and r.proof_status is ProofStatus.CONFIRMED and has_weights(r.release_id)]
    if not usable:
        assert pin == GENESIS_VERSION
    else:
        assert pin in {r.version.version for r in usable}
        minor = int(pin.split(".")[1])
        assert all(int(r.version.version.split(".")[1]) <= minor for r in usable)


@pytest.mark.parametrize(
    ("task_type", "schema", "data", "expected"),
    [
        ("inference", "owm.inference.features", {"sub_model": "owm-geo", "features": []},
         "owm-geo"),
        ("inference", "owm.inference.text", {"prompt": "hi"}, "owm-base"),
        ("inference", "owm.inference.text", {"prompt": "hi", "sub_model": "owm-geo"}, "owm-geo"),
        # the BM25 reader reads the passages it is sent, no weights
        ("inference", "owm.inference.passages", {"sub_model": "owm-geo", "query": "q"}, None),
        ("fl_training", "owm.fl.train", {"sub_model": "owm-base"}, "owm-base"),
        # the global model travels in the input: the input is the model
        ("fl_training", "owm.fl.train", {"sub_model": "owm-base", "global_weights": [0.1]}, None),
        ("gradient_aggregation", "owm.fl.aggregate", {"rule": "krum"}, None),
        ("inference", "owm.inference.features", {"sub_model": 7}, None),  # nodes reject it
    ],
)
def test_only_tasks_that_read_a_sub_models_weights_are_pinned(
    task_type: str, schema: str, data: dict, expected: str | None
) -> None:
    assert weights_sub_model(task_type, schema, data) == expected


def request(task_id: str, model_version: str) -> TaskRequest:
    return TaskRequest(task_id=task_id, task_type="inference",
                       input_schema_id="owm.inference.features", input_schema_version=1,
                       min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0, gpu_required=False,
                       max_price_msat=1_000, model_version=model_version)


@given(
    pin=st.sampled_from(["genesis", "owm-v0.1.0", "owm-v12.3.4-rc.1"]),
    redundancy=st.integers(1, 7),
    timeouts=st.lists(st.integers(0, 6), max_size=6),
)
def test_every_replica_of_a_task_carries_the_one_pin_also_after_reassignment(
    pin: str, redundancy: int, timeouts: list[int]
) -> None:
    policy = VerificationPolicy(mode=VerificationMode.REDUNDANT, redundancy=redundancy,
                                redundancy_floor=1)
    repositories = memory_repositories()
    replicas = submit_task(repositories, request("job", pin), policy)
    assert [r.task_id for r in replicas] == replica_ids("job", policy)
    for index in timeouts:  # a timed-out (or rejected) replica goes to another node as it was
        replica = replicas[index % len(replicas)]
        assigned = attrs.evolve(replica, state=TaskState.ASSIGNED, node_id="n",
                                price_msat=1, deadline_at=1)
        replicas[index % len(replicas)] = time_out(assigned, 2)
    assert {r.request.model_version for r in replicas} == {pin}
    stored = [repositories.tasks.get(rid) for rid in replica_ids("job", policy)]
    assert {r.request.model_version for r in stored if r is not None} == {pin}


@pytest.mark.parametrize("bad", ["current", "../owm-v0.1.0", "owm-v1", "x" * 65])
def test_a_pin_is_genesis_a_release_version_or_nothing(bad: str) -> None:
    with pytest.raises(InvalidValue, match="model_version"):
        request("job", bad)
