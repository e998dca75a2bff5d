"""The pool's share store at scale: the dashboard's queries over 10 million shares in
PostgreSQL (SRS-POOL-10/11, SRS-LN-14).

Usage:  PYTHONPATH=. .venv/bin/python bench/pool_storage.py [--rows 10000000] [--miners 1000]

What it does, in one run:

1. A throw-away PostgreSQL cluster from the installed binaries (``bench/heartbeats.py``'s
   ``postgres_cluster``, like the tests'), migrated to head by alembic: the real ``shares``
   table with every index the migrations create.
2. ``--rows`` accepted shares spread evenly over the last 30 days (what retention keeps),
   ``--miners`` miners, one share in ``--block-every`` a block, loaded with ``COPY`` (the
   secondary indexes are dropped for the load and rebuilt after it, as a restore would), then
   ``VACUUM ANALYZE``.
3. Each query the pool page, ``/v1/mining/*``, the live feed and the payout sweep issue,
   through the real SQL repository (:class:`~owm_adapters.storage.sql.repositories.pool.
   SqlShareRepository`): the statement it sends is captured and run again under
   ``EXPLAIN (ANALYZE, BUFFERS)``; the plan's index names and the median of ``--repeat``
   timed calls are printed. Last, the hourly retention job deletes one hour's worth of the
   oldest shares.

The last two lines are machine-readable: ``rows load_s hourly_work_ms blocks_30d_ms
miner_blocks_ms latest_block_ms prune_hour_ms indexes_used`` and the values.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from bench.heartbeats import postgres_cluster
from owm_adapters.storage.sql import open_repositories
from owm_adapters.storage.sql.repositories.pool import SqlShareRepository

DAY_S = 86_400
WINDOW_S = 30 * DAY_S
NOW = 1_800_000_000
COPY_COLUMNS = ("hash_hex", "miner_id", "share_difficulty", "credited_numerator",
                "credited_denominator", "is_block", "accepted_at")  # fmt: skip


def load(engine: Engine, rows: int, miners: int, block_every: int) -> float:
    """COPY ``rows`` shares into ``shares`` (secondary indexes rebuilt after); seconds."""
    miner_ids = [f"n{hashlib.sha256(b'miner-%d' % m).hexdigest()[:40]}" for m in range(miners)]
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'shares' "
            "AND indexname NOT LIKE 'pk_%' AND indexname NOT LIKE 'uq_%'"
        )
        secondary = cursor.fetchall()
        for name, _ in secondary:
            cursor.execute(f'DROP INDEX "{name}"')
        step = WINDOW_S / rows
        columns = ", ".join(COPY_COLUMNS)
        with cursor.copy(f"COPY shares ({columns}) FROM STDIN") as copy:
            batch: list[str] = []
            for i in range(rows):
                at = NOW - WINDOW_S + 1 + int(i * step)
                digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
                block = "t" if i % block_every == block_every - 1 else "f"
                batch.append(f"{digest}\t{miner_ids[i % miners]}\t65536\t65536\t1\t{block}\t{at}\n")
                if len(batch) == 50_000:
                    copy.write("".join(batch))
                    batch.clear()
            copy.write("".join(batch))
        for _, definition in secondary:
            cursor.execute(definition)
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE shares"))
    return time.perf_counter() - started


class Captured:
    """The statements the repository sends, with their parameters (to EXPLAIN them)."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[tuple[str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters))


def explain(
    engine: Engine, statement: str, parameters: Any, settings: list[str]
) -> tuple[list[str], str]:
    """The index names the plan uses and the plan's text (EXPLAIN ANALYZE, BUFFERS), under
    the ``SET LOCAL`` settings the repository sent before the statement."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for setting in settings:
            cursor.execute(setting)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
        row = cursor.fetchone()
        assert row is not None
        plan = row[0]
        raw.rollback()  # a DELETE explained is a DELETE run: undo it before the second look
        for setting in settings:
            cursor.execute(setting)
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
        lines = [row[0] for row in cursor.fetchall()]
        raw.rollback()
    finally:
        raw.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    found: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            found.append(f"{node['Node Type']} on {node['Index Name']}")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return found, "\n".join(lines)


def settings(captured: Captured) -> list[str]:
    """The ``SET LOCAL`` statements the call sent before its query."""
    return [s for s, _ in captured.statements if s.upper().startswith("SET LOCAL")]


def timed(
    engine: Engine, captured: Captured, name: str, call: Callable[[], Any], repeat: int
) -> tuple[float, list[str]]:
    """Median ms of ``repeat`` calls; the plan of the statement the call sends, printed."""
    captured.statements.clear()
    result = call()
    statement, parameters = captured.statements[-1]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    indexes, plan = explain(engine, statement, parameters, settings(captured))
    shown = result if not isinstance(result, list) else f"{len(result)} rows"
    print(f"\n== {name}: median {statistics.median(times):.1f} ms of {repeat}, result {shown}")
    print(f"   indexes: {', '.join(indexes) or 'NONE (sequential scan)'}")
    print("   " + plan.replace("\n", "\n   "))
    return statistics.median(times), indexes


def prune(
    engine: Engine, captured: Captured, shares: SqlShareRepository
) -> tuple[float, list[str]]:
    """The hourly retention job deleting the oldest hour of shares, timed once; its plan is
    shown for the next hour, in a transaction rolled back."""
    cutoff = NOW - WINDOW_S + 1 + 3_600
    captured.statements.clear()
    started = time.perf_counter()
    deleted = shares.delete_older_than(cutoff)
    ms = (time.perf_counter() - started) * 1000
    statement, parameters = captured.statements[-1]
    later = {k: (v + 3_600 if v == cutoff else v) for k, v in dict(parameters).items()}
    indexes, plan = explain(engine, statement, later, settings(captured))
    print(f"\n== retention: the oldest hour deleted ({deleted:,} shares) in {ms:.1f} ms")
    print(f"   indexes: {', '.join(indexes) or 'NONE (sequential scan)'}")
    print("   " + plan.replace("\n", "\n   "))
    return ms, indexes


def run(args: argparse.Namespace) -> None:
    with postgres_cluster() as url:
        repos = open_repositories(url)
        engine: Engine = repos.shares._db.engine  # the adapter's own engine
        load_s = load(engine, args.rows, args.miners, args.block_every)
        print(f"loaded {args.rows:,} shares of {args.miners} miners with COPY in {load_s:.1f} s")
        shares: SqlShareRepository = repos.shares
        captured = Captured(engine)
        miner = f"n{hashlib.sha256(b'miner-7').hexdigest()[:40]}"
        figures = {
            "hourly_work": timed(engine, captured, "hourly work, last 24 h (page, stats, feed)",
                                 lambda: shares.hourly_work(NOW, 24), args.repeat),
            "blocks_30d": timed(engine, captured, "blocks found in 30 days (stats, page)",
                                lambda: shares.blocks_since(NOW - WINDOW_S + 1), args.repeat),
            "miner_blocks": timed(engine, captured, "one miner's blocks in 30 days (/nodes/{id})",
                                  lambda: shares.blocks_since(NOW - WINDOW_S + 1, miner),
                                  args.repeat),
            "latest_block": timed(engine, captured, "newest block (payout sweep, SRS-LN-14)",
                                  shares.latest_block_at, args.repeat),
        }  # fmt: skip
        prune_ms, prune_indexes = prune(engine, captured, shares)
        used = sorted({i for _, found in figures.values() for i in found} | set(prune_indexes))
        repos.close()
    print("\nrows load_s hourly_work_ms blocks_30d_ms miner_blocks_ms latest_block_ms "
          "prune_hour_ms indexes_used")  # fmt: skip
    print(f"{args.rows} {load_s:.1f} " + " ".join(f"{figures[k][0]:.1f}" for k in figures)
          + f" {prune_ms:.1f} " + "|".join(i.replace(" ", "_") for i in used))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="shares to load")
    parser.add_argument("--miners", type=int, default=1_000, help="distinct miners")
    parser.add_argument("--block-every", type=int, default=100_000,
                        help="one share in this many is a block")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per query")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
