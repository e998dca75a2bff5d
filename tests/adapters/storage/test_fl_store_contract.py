"""The FL round store: the in-memory twin, SQLite and PostgreSQL keep rounds and updates alike.

Uses the repository contract's backends (``test_repositories_contract.open_backend``): every
test runs against memory, a migrated SQLite file and a migrated PostgreSQL database.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_core.errors import Conflict
from owm_core.fl.rounds import FlRound, RoundState, RoundUpdate, close, fail, note_rejection
from owm_core.fl.updates import parse_update, sign_update
from owm_core.identity.keys import Identity
from owm_core.ports.repositories import Repositories
from tests.adapters.storage.test_repositories_contract import (  # noqa: F401 (fixtures)
    BACKENDS,
    Backend,
    open_backend,
    sqlite_template,
)

T0 = 1_800_000_000
NODES = [Identity.from_seed(bytes([i + 40]) * 32) for i in range(3)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with open_backend(request.param, request, tmp_path) as opened:
        yield opened


@pytest.fixture
def repos(backend: Backend) -> Repositories:
    return backend.repos


def a_round(number: int = 1, **changes: object) -> FlRound:
    values: dict[str, object] = {
        "number": number,
        "sub_model": "owm-base",
        "state": RoundState.OPEN,
        "started_at": T0,
        "rule": "trimmed",
        "task_ids": (f"fl-r{number}-a",),
        "base_version": "genesis",
    }
    values.update(changes)
    return FlRound(**values)  # type: ignore[arg-type]


def an_update(node: int, number: int = 1, weights: tuple[float, ...] = (0.5, -1.25, 3.0),
              received_at: int = T0 + 10) -> RoundUpdate:
    body = sign_update(
        NODES[node], round_number=number, sub_model="owm-base", task_id=f"fl-r{number}-a:{node}",
        num_examples=64, loss=0.75, weights=list(weights),
    )
    return RoundUpdate(parse_update(body), received_at=received_at)


def test_a_round_reads_back_equal_through_its_whole_life(repos: Repositories) -> None:
    opened = a_round()
    repos.fl_rounds.add_round(opened)
    assert repos.fl_rounds.get_round(1) == opened
    noted = note_rejection(opened, NODES[0].node_id, "task is not assigned to this node")
    repos.fl_rounds.save_round(noted)
    closed = close(
        noted, now=T0 + 40, f=1, participants=3,
        accepted=[n.node_id for n in NODES], flagged=[NODES[2].node_id],
        accuracy_ppm=803_500, loss=0.6125, version_id="owm-base@owm-v0.1.0",
    )
    repos.fl_rounds.save_round(closed)
    assert repos.fl_rounds.get_round(1) == closed
    assert repos.fl_rounds.get_round(2) is None


def test_round_numbers_are_unique_and_unknown_rounds_cannot_be_saved(repos: Repositories) -> None:
    repos.fl_rounds.add_round(a_round())
    with pytest.raises(Conflict):
        repos.fl_rounds.add_round(a_round(sub_model="owm-geo"))
    with pytest.raises(Conflict):
        repos.fl_rounds.save_round(a_round(7))


def test_rounds_are_listed_newest_first_and_filtered_by_state(repos: Repositories) -> None:
    for number in (2, 5, 3):
        repos.fl_rounds.add_round(a_round(number))
    repos.fl_rounds.save_round(fail(a_round(3), now=T0 + 9, reason="too few updates"))
    assert [r.number for r in repos.fl_rounds.rounds()] == [5, 3, 2]
    assert [r.number for r in repos.fl_rounds.rounds(limit=2)] == [5, 3]
    assert [r.number for r in repos.fl_rounds.rounds(state=RoundState.OPEN)] == [5, 2]
    assert [r.number for r in repos.fl_rounds.rounds(state=RoundState.FAILED)] == [3]


def test_updates_come_back_bit_for_bit_in_arrival_order(repos: Repositories) -> None:
    repos.fl_rounds.add_round(a_round())
    stored = [an_update(2, weights=(1e-38, -0.0, 3.4e38)), an_update(0), an_update(1)]
    for update in stored:
        assert repos.fl_rounds.add_update(update) is True
    assert list(repos.fl_rounds.updates(1)) == stored
    assert repos.fl_rounds.updates(2) == []


def test_the_same_upload_twice_is_idempotent_and_a_different_one_conflicts(
    repos: Repositories,
) -> None:
    repos.fl_rounds.add_round(a_round())
    first = an_update(0)
    assert repos.fl_rounds.add_update(first) is True
    assert repos.fl_rounds.add_update(an_update(0, received_at=T0 + 99)) is False
    with pytest.raises(Conflict):
        repos.fl_rounds.add_update(an_update(0, weights=(9.0, 9.0, 9.0)))
    assert list(repos.fl_rounds.updates(1)) == [first]


def test_an_update_needs_a_known_round(repos: Repositories) -> None:
    with pytest.raises(Conflict):
        repos.fl_rounds.add_update(an_update(0, number=9))


def test_scores_are_recorded_per_node_and_only_for_stored_updates(repos: Repositories) -> None:
    repos.fl_rounds.add_round(a_round())
    for node in range(3):
        repos.fl_rounds.add_update(an_update(node))
    scores = {NODES[0].node_id: (0.9, False), NODES[2].node_id: (42.5, True)}
    repos.fl_rounds.score_updates(1, scores)
    scored = {u.node_id: (u.anomaly_score, u.flagged) for u in repos.fl_rounds.updates(1)}
    assert scored == {
        NODES[0].node_id: (0.9, False),
        NODES[1].node_id: (None, False),
        NODES[2].node_id: (42.5, True),
    }
    with pytest.raises(Conflict):
        repos.fl_rounds.score_updates(2, {NODES[0].node_id: (1.0, False)})


def test_rounds_and_updates_roll_back_with_an_atomic_block(repos: Repositories) -> None:
    with pytest.raises(RuntimeError), repos.atomic():
        repos.fl_rounds.add_round(a_round())
        repos.fl_rounds.add_update(an_update(0))
        raise RuntimeError("crash before commit")
    assert repos.fl_rounds.get_round(1) is None
    repos.fl_rounds.add_round(a_round())
    assert repos.fl_rounds.updates(1) == []
