"""Exactly-once rewards under SIGKILL (SRS-LN-04): a dispatcher process killed at several points
pays every reward exactly once after restarts — checked on the ledger and in the outbox.

Each run is a real child process (forked, so that it skips the interpreter's import time) that
opens the SQLite store and the ledger file itself and SIGKILLs itself at a named checkpoint
(``OWM_TEST_CRASH_AT`` does the same for ``python -m tests.e2e.payout_worker DIR``).
"""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.e2e.payout_worker import NODES, TASKS, main


def _child(directory: str, crash_at: str) -> None:
    sys.exit(main(Path(directory), crash_at))


def _run(directory: Path, crash_at: str) -> int:
    process = multiprocessing.get_context("fork").Process(
        target=_child, args=(str(directory), crash_at)
    )
    process.start()
    process.join(60)
    assert process.exitcode is not None, "the dispatcher process hung"
    return process.exitcode


@pytest.mark.parametrize(
    "crashes",
    [
        # after the node's invoice, before the record; after paying, before recording success;
        # after the success of the 3rd payment (mid-batch)
        ["after-invoice:2", "after-pay", "after-success:3"],
        # after the record; marked in flight but not yet paid; after the 3rd payment (mid-batch)
        ["after-record:4", "before-pay:2", "after-pay:3"],
    ],
)
def test_a_dispatcher_killed_at_any_point_pays_each_reward_exactly_once(
    tmp_path: Path, crashes: list[str]
) -> None:
    for crash_at in crashes:
        assert _run(tmp_path, crash_at) == -signal.SIGKILL, f"did not reach {crash_at}"
    assert _run(tmp_path, "") == 0

    with sqlite3.connect(tmp_path / "lightning.sqlite3") as ledger:
        received = {
            alias: ledger.execute(
                "SELECT c.balance_b_msat FROM sim_ln_channels c JOIN sim_ln_nodes n"
                " ON n.pubkey = c.node_b WHERE n.alias = ?", (alias,)
            ).fetchone()[0]
            for alias in NODES
        }
        sent = ledger.execute(
            "SELECT COUNT(*), SUM(amount_msat) FROM sim_ln_payments WHERE status = 'succeeded'"
        ).fetchone()
    owed = {alias: sum(p for a, p in TASKS.values() if a == alias) for alias in NODES}
    assert received == owed
    assert sent == (len(TASKS), sum(p for _, p in TASKS.values()))

    with sqlite3.connect(tmp_path / "coordinator.sqlite3") as store:
        rows = store.execute("SELECT task_id, state FROM payments ORDER BY task_id").fetchall()
        logged = store.execute("SELECT COUNT(*) FROM payment_attempts").fetchone()[0]
    assert rows == [(task_id, "succeeded") for task_id in sorted(TASKS)]
    assert logged >= 2 * len(TASKS)  # at least a start and a success line per payment
