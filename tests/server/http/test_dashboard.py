"""The coordinator's web dashboard: server-rendered fragments, and the page in real Chromium.

The Chromium test serves the real application with uvicorn on a free port and loads
``/dashboard`` in Debian's headless ``chromium`` (installed by ``scripts/test``). The page
itself carries no data: every value must arrive through htmx's fragment requests. A payment
added to the store only after the browser's first payments request must show up too, which
only the ``every 2s`` refresh can bring. A screenshot is written to the test's tmp dir.

The chart panels are fed through the real services: heartbeats through the coordinator's
heartbeat ingestion, a reward through the payout dispatcher over the embedded Lightning ledger,
a stake through registration; each chart must then be drawn with a point per value.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.services.api.history import BUCKETS
from owm_adapters.services.payouts import LedgerInvoiceSource, PayoutDispatcher
from owm_core.coordination.tasks import submit_task
from owm_core.fl.rounds import FlRound
from owm_core.market.tasks import Settlement, SettlementKind, TaskRequest, VerificationPolicy
from owm_core.nodes.tiers import Tier
from owm_core.payments.records import start_attempt, succeed
from owm_server.http.app import create_app
from owm_server.http.dashboard import PANELS
from owm_server.http.dashboard_charts import CHART_PANELS
from owm_server.http.serve import ApiServer
from tests.server.harness import T1_STAKE_SAT, SimNode
from tests.server.http import records
from tests.server.http.world import T0, World, build_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path)


def _populate(world: World) -> dict[str, str]:
    """A registered node, a waiting task, a payment, a stamped version and a slashing entry."""
    node = world.register()
    # Stored straight into the store: the market would refuse a task for 3 nodes from 1 node.
    submit_task(
        world.repos,
        TaskRequest(
            task_id="task-waiting-7", task_type="inference", input_schema_id="owm.inference.text",
            input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
            gpu_required=False, max_price_msat=10_000,
        ),
        VerificationPolicy(),
    )
    world.repos.payments.upsert(records.payment(1, node.node_id, T0))
    world.repos.releases.add(records.release("owm-v0.3.0", T0))
    world.repos.slashing_log.append(records.slashing_entry(None, "n" + "ab" * 20, T0))
    world.repos.fl_rounds.add_round(FlRound(
        number=4, sub_model="owm-base", state="closed", started_at=T0, rule="trimmed",
        task_ids=("fl-r4",), base_version="genesis", closed_at=T0 + 30, participants=3,
        accepted=(node.node_id, "n" + "cd" * 20), rejected=("n" + "ef" * 20 + ": outlier",),
        flagged=("n" + "ef" * 20,), accuracy_ppm=912_300, version_id="owm-base@fl-4",
    ))
    return {"node_id": node.node_id}


def _populate_history(world: World) -> dict[str, int]:
    """History through the real services, before :func:`_populate` (which adds the FL round
    and the slashing entry the charts show, and an unpayable payment): a staked node
    registers, sends heartbeats over three buckets, and is paid a reward over the embedded
    Lightning ledger. Returns how many points each chart must draw."""
    node = SimNode.create()
    world.ledger.add_node("paid-node", secret_key=node.ln_key.secret)
    world.ledger.open_channel(world.treasury, node.ln_pubkey, 2 * T1_STAKE_SAT,
                              push_sat=T1_STAKE_SAT)  # fmt: skip
    world.register(node)
    for _ in range(3):
        for _ in range(2):
            world.services.coordinator.heartbeat(node.heartbeat_envelope(world.clock.now()))
        world.clock.advance(300)
    payouts = PayoutDispatcher(world.repos, world.ledger.lightning("treasury"),
                               LedgerInvoiceSource(world.ledger), world.clock)  # fmt: skip
    payouts.on_settlement(Settlement("task-paid", node.node_id, SettlementKind.SETTLE, 40_000))
    assert payouts.sweep() == 1
    (paid,) = world.repos.payments.for_task("task-paid")
    assert paid.settled
    return {
        "chart-online": BUCKETS, "chart-heartbeats": BUCKETS,
        "chart-payments": 2 * BUCKETS, "chart-earnings": BUCKETS,
        "chart-latency": 2,  # median and longest of the one bucket a payment settled in
        "chart-fl-accuracy": 1, "chart-fl-flagged": 1,
        "chart-stake": 4 * BUCKETS,  # active, degraded, suspended, slashed
    }  # fmt: skip


_SVG = re.compile(r'<svg [^>]*id="(chart-[a-z-]+)"[^>]*data-points="(\d+)"[^>]*>(.*?)</svg>', re.S)


def _charts(html_text: str) -> dict[str, tuple[int, int]]:
    """Each drawn chart: (points it says it drew, point elements it holds)."""
    return {
        m.group(1): (int(m.group(2)), len(re.findall(r'class="point"', m.group(3))))
        for m in _SVG.finditer(html_text)
    }


def test_each_chart_draws_a_point_per_value_of_the_history_the_services_stored(world):
    expected = _populate_history(world)
    _populate(world)
    drawn: dict[str, tuple[int, int]] = {}
    for name in CHART_PANELS:
        reply = world.client.get(f"/dashboard/fragments/{name}")
        assert reply.status_code == 200
        drawn.update(_charts(reply.text))
    assert drawn == {chart: (n, n) for chart, n in expected.items()}
    heartbeats = world.client.get("/dashboard/fragments/activity").text
    assert heartbeats.count(": 2 heartbeats</title>") == 3  # two in each of three buckets
    assert "paid to nodes" in world.client.get("/dashboard/fragments/payment-flow").text
    fl = world.client.get("/dashboard/fragments/fl-quality").text
    assert "accuracy, #4: 91.2 %</title>" in fl and "flagged, #4: 1 updates</title>" in fl


def test_an_empty_store_says_no_data_yet_on_every_chart_instead_of_drawing_one(world):
    texts = [world.client.get(f"/dashboard/fragments/{name}").text for name in CHART_PANELS]
    assert all("<svg" not in text for text in texts)
    assert texts[0].count('class="empty chart-empty"') == 2
    assert "no node sent a heartbeat in the last 3 h" in texts[0]
    assert "no payment settled in the last 3 h" in texts[2]
    assert "no FL round yet" in texts[3]
    assert "no stake change and no slashing in the last 3 h" in texts[4]


def test_the_page_holds_no_data_and_asks_for_every_table_every_two_seconds_and_charts_every_ten(
    world,
):
    _populate(world)
    reply = world.client.get("/dashboard")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for name in PANELS:
        every = "every 10s" if name in CHART_PANELS else "every 2s"
        assert f'hx-get="/dashboard/fragments/{name}" hx-trigger="load, {every}"' in page
    assert "task-waiting-7" not in page and "owm-v0.3.0" not in page
    assert '<script src="/dashboard/static/htmx.min.js"></script>' in page
    assert "http://" not in page and "https://" not in page  # nothing from another site
    assert "script-src 'self'" in reply.headers["content-security-policy"]


def test_the_vendored_htmx_is_served_from_the_package(world):
    reply = world.client.get("/dashboard/static/htmx.min.js")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/javascript")
    assert reply.text.startswith("var htmx=function()")
    assert world.client.get("/dashboard/").status_code == 200


def test_each_fragment_renders_what_the_store_holds(world):
    ids = _populate(world)
    text = {name: world.client.get(f"/dashboard/fragments/{name}").text for name in PANELS}
    assert "1 (offline 0, online 1, suspended 0)" in text["summary"]
    assert "100,000 sat in 1 active stakes" in text["summary"]
    assert ids["node_id"] in text["nodes"] and "active" in text["nodes"]
    assert "100,000 / 100,000 sat" in text["nodes"]
    assert "task-waiting-7" in text["tasks"] and "submitted" in text["tasks"]
    assert "30.001 sat" in text["payments"] and "pending" in text["payments"]
    assert "owm-geo@owm-v0.3.0" in text["versions"] and "confirmed" in text["versions"]
    assert "fake_proof" in text["slashing"] and "800000x1x0" in text["slashing"]
    fl_row = text["fl"].split("<tbody>")[1]
    cells = [c.split("</td>")[0] for c in fl_row.split("<td>")[1:]]
    assert cells[:10] == ["4", "owm-base", "closed", "trimmed", "3", "2", "1", "1", "91.2 %",
                          "owm-base@fl-4"]


def test_a_bounty_paid_to_a_lightning_node_outside_the_registry_is_listed_once_settled(world):
    """Bounties and contribution rewards go to contributors' Lightning nodes, which are not
    registered OWM nodes: the payments table lists them once settled (SRS-LN-08)."""
    now = world.clock.now()
    bounty = attrs.evolve(records.payment(9, "contributor-ln-node", now), task_id="bounty:7")
    world.repos.payments.upsert(bounty)
    assert "bounty:7" not in world.client.get("/dashboard/fragments/payments").text
    world.repos.payments.upsert(succeed(start_attempt(bounty, now), now))
    body = world.client.get("/dashboard/fragments/payments").text
    assert body.count("bounty:7") == 1 and "succeeded" in body


def test_values_from_the_store_are_escaped(world):
    node = world.register()
    payment = records.payment(2, node.node_id, T0)
    world.repos.payments.upsert(attrs.evolve(payment, task_id="<script>alert(1)</script>"))
    body = world.client.get("/dashboard/fragments/payments").text
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


def test_an_unknown_panel_is_a_404_that_names_it_escaped(world):
    reply = world.client.get("/dashboard/fragments/%3Cb%3E")
    assert reply.status_code == 404
    assert "&lt;b&gt;" in reply.text


# --------------------------------------------------------------------------- real Chromium


class Recorder:
    """ASGI middleware: records request paths; calls ``after_first`` once the first response
    to ``watch`` has been sent."""

    def __init__(self, app, watch: str, after_first: Callable[[], None]) -> None:
        self.app = app
        self.watch = watch
        self.after_first = after_first
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._fired = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope["path"] == self.watch:
            with self._lock:
                fire, self._fired = not self._fired, True
            if fire:
                self.after_first()


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed: `apt-get install -y chromium` "
                    "(scripts/test installs it)")
    return found


def _browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-extensions", f"--user-data-dir={profile}", *extra, url],
        capture_output=True, text=True, timeout=90,
    )


@pytest.mark.slow
def test_in_headless_chromium_the_panels_fill_and_refresh_and_a_screenshot_is_taken(
    world, tmp_path
):
    expected = _populate_history(world)
    ids = _populate(world)
    late = records.payment(99, ids["node_id"], T0)

    def add_late_payment() -> None:
        world.repos.payments.upsert(late)

    app = Recorder(create_app(world.services), "/dashboard/fragments/payments", add_late_payment)
    server = ApiServer(app, "127.0.0.1:0", grace_s=1)  # type: ignore[arg-type]
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/dashboard"
        dumped = _browse(url, tmp_path / "profile-dom", "--virtual-time-budget=5000",
                         "--dump-dom")
        assert dumped.returncode == 0, dumped.stderr[-2000:]
        dom = dumped.stdout
        # Data that only the fragment requests carry, now in the browser's DOM.
        assert ids["node_id"] in dom
        assert "task-waiting-7" in dom
        assert "owm-geo@owm-v0.3.0" in dom and "confirmed" in dom
        assert "200,000 sat in 2 active stakes" in dom  # with the paid node's
        assert "owm-base@fl-4" in dom and "91.2 %" in dom
        assert "loading…" not in dom
        # The payment stored after the first payments request arrived through a refresh.
        assert late.task_id in dom
        assert app.paths.count("/dashboard/fragments/payments") >= 2
        assert "/dashboard/static/htmx.min.js" in app.paths
        # Every chart is in the browser's DOM, drawn with a point per value.
        assert _charts(dom) == {chart: (n, n) for chart, n in expected.items()}

        shot = tmp_path / "dashboard.png"
        taken = _browse(url, tmp_path / "profile-shot", "--virtual-time-budget=3000",
                        "--window-size=1280,1400", "--hide-scrollbars", f"--screenshot={shot}")
        assert taken.returncode == 0, taken.stderr[-2000:]
    finally:
        server.stop(1)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1280, 1400)
    assert len(data) > 20_000  # a page with tables, not a blank image
