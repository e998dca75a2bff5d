"""On PostgreSQL each periodic sweep's keyset page (rows in a state, after a position, in
position order, at most a page) is read as an ordered index range that stops at the page's
size: the plan sorts nothing and reads the page's own index.

Without those indexes a page read every row in its state and sorted them (open escrows, open
top-ups, waiting bounties) or walked the whole table by position filtering out the rows in
other states (owed payments: no index returns two states in position order, so the owed page
reads each state's range and merges them; the tick's expired tasks likewise, by expiry and
position). The tables hold many rows, few of them in the
paged states, as a coordinator's tables do after a while; the statements are the
repositories' own, captured as they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

from owm_adapters.storage.sql import open_repositories
from owm_adapters.storage.sql.store import SqlRepositories
from owm_core.governance.contributions import BountyStatus
from owm_core.payments.records import PaymentState
from tests.conftest import PostgresServer

pytestmark = pytest.mark.timeout(120)

ROWS = 20_000
"""Rows of each paged table; one in 50 is in a paged state."""

FILL = [
    f"""INSERT INTO payments (seq, payment_hash, payment_id, task_id, node_id, amount_msat,
        state, attempts, created_at, updated_at)
      SELECT g, lpad(to_hex(g), 64, '0'), 'p-' || g, 't-' || g, 'n-' || (g % 100), 1000,
        CASE g % 100 WHEN 0 THEN 'pending' WHEN 1 THEN 'failed' WHEN 2 THEN 'in_flight'
          ELSE 'succeeded' END, 1, g, g
      FROM generate_series(1, {ROWS}) g""",
    f"""INSERT INTO escrows (seq, task_id, payer, funder, opened_at, price_msat, share_msat,
        replicas, funded_msat, held_msat, paid_to_nodes_msat, treasury_share_msat,
        refunded_msat, settled_replica_ids, closed)
      SELECT g, 't-' || g, 'network', 'network', g, 1, 0, 1, 1, 0, 0, 0, 1, '[]', g % 50 <> 0
      FROM generate_series(1, {ROWS}) g""",
    f"""INSERT INTO top_ups (seq, payment_hash, public_key, amount_msat, bolt11, created_at,
        expires_at, state)
      SELECT g, lpad(to_hex(g), 64, '0'), lpad(to_hex(g % 500), 64, '0'), 1, 'lnbcrt1', g,
        g + 3600, CASE WHEN g % 50 = 0 THEN 'open' ELSE 'credited' END
      FROM generate_series(1, {ROWS}) g""",
    f"""INSERT INTO bounties (bounty_id, repository, issue_number, title, amount_sat,
        created_by, created_at, status)
      SELECT md5(g::text), 'owner/repo', g, 'issue', 1, 'someone', g,
        CASE WHEN g % 50 = 0 THEN 'open' ELSE 'paid' END
      FROM generate_series(1, {ROWS}) g""",
    f"""INSERT INTO tasks (seq, task_id, task_type, input_schema_id, input_schema_version,
        min_tier, min_vram_mb, min_ram_mb, gpu_required, max_price_msat, state,
        tried_node_ids, expires_at)
      SELECT g, 't-' || g, 'inference', 'schema', 1, 't1', 0, 0, false, 1,
        CASE g % 100 WHEN 0 THEN 'submitted' WHEN 1 THEN 'timed-out' ELSE 'settled' END,
        '[]', g / 10
      FROM generate_series(1, {ROWS}) g""",
    f"""INSERT INTO task_commitments (replica_id, round_id, node_id, digest, committed_at)
      SELECT 'r-' || lpad(g::text, 6, '0') || ':' || (g % 3), 'r-' || lpad(g::text, 6, '0'),
        'n-' || (g % 100), md5(g::text), g
      FROM generate_series(1, {ROWS}) g""",
]


@pytest.fixture(scope="module")
def repos(
    postgresql_server: PostgresServer, postgresql_template: str
) -> Iterator[SqlRepositories]:
    """One migrated PostgreSQL database with the filled tables, analysed, for every test."""
    name = postgresql_server.create_database(template=postgresql_template)
    opened = open_repositories(postgresql_server.url(name), migrate=False)
    with opened.database.engine.begin() as conn:
        for statement in FILL:
            conn.execute(text(statement))
    with opened.database.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    yield opened
    opened.close()
    postgresql_server.drop_database(name)


def plan_of(engine: Engine, call: Callable[[], object]) -> list[dict[str, Any]]:
    """The plan nodes of the one statement ``call`` runs, with its own parameters."""
    ran: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        ran.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    (statement, parameters), = [r for r in ran if r[0].lstrip().upper().startswith("SELECT")]
    with engine.connect() as conn:
        (plan,) = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).one()
    nodes, todo = [], [plan[0]["Plan"]]
    while todo:
        node = todo.pop()
        nodes.append(node)
        todo.extend(node.get("Plans", []))
    return nodes


PAGES: dict[str, tuple[Callable[[SqlRepositories], object], str]] = {
    "owed payments": (
        lambda r: r.payments.in_states_after(
            (PaymentState.PENDING, PaymentState.FAILED), ROWS // 2, 100),
        "ix_payments_state_seq",
    ),
    "in-flight payments": (
        lambda r: r.payments.in_states_after((PaymentState.IN_FLIGHT,), ROWS // 2, 100),
        "ix_payments_state_seq",
    ),
    "open escrows": (lambda r: r.funding.open_escrows(ROWS // 2, 100), "ix_escrows_closed_seq"),
    "open top-ups": (
        lambda r: r.funding.open_top_ups_after(ROWS // 2, 100), "ix_top_ups_state_seq",
    ),
    "expired tasks": (
        lambda r: r.tasks.expired_after(ROWS, (ROWS // 20, ROWS // 2), 100),
        "ix_tasks_state_expires_at_seq",
    ),
    "due rounds": (
        lambda r: r.commitments.rounds_started_by_after(ROWS, f"r-{ROWS // 2:06}", 100),
        "ix_task_commitments_round_id",
    ),
    "open bounties": (
        lambda r: r.bounties.after(BountyStatus.OPEN, "8", 100), "ix_bounties_status_bounty_id",
    ),
}


@pytest.mark.parametrize("page", list(PAGES))
def test_a_sweeps_page_is_one_ordered_index_range_and_sorts_nothing(
    repos: SqlRepositories, page: str
) -> None:
    call, index = PAGES[page]
    nodes = plan_of(repos.database.engine, lambda: call(repos))
    assert not [n for n in nodes if "Sort" in n["Node Type"]]  # nor an Incremental Sort
    scans = [n for n in nodes if "Relation Name" in n]
    assert scans and {n.get("Index Name") for n in scans} == {index}
