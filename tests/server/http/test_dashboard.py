"""The coordinator's web dashboard: server-rendered fragments, and the page in real Chromium.

The Chromium test serves the real application with uvicorn on a free port and loads
``/dashboard`` in Debian's headless ``chromium`` (installed by ``scripts/test``). The page
itself carries no data: every value must arrive through htmx's fragment requests. A payment
added to the store only after the browser's first payments request must show up too, which
only the ``every 2s`` refresh can bring. A screenshot is written to the test's tmp dir.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest

from owm_core.coordination.tasks import submit_task
from owm_core.fl.rounds import FlRound
from owm_core.market.tasks import TaskRequest, VerificationPolicy
from owm_core.nodes.tiers import Tier
from owm_server.http.app import create_app
from owm_server.http.dashboard import PANELS
from owm_server.http.serve import ApiServer
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


def test_the_page_holds_no_data_and_asks_for_every_panel_now_and_every_two_seconds(world):
    _populate(world)
    reply = world.client.get("/dashboard")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    page = reply.text
    for name in PANELS:
        assert f'hx-get="/dashboard/fragments/{name}" hx-trigger="load, every 2s"' in page
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
        assert "100,000 sat in 1 active stakes" in dom
        assert "owm-base@fl-4" in dom and "91.2 %" in dom
        assert "loading…" not in dom
        # The payment stored after the first payments request arrived through a refresh.
        assert late.task_id in dom
        assert app.paths.count("/dashboard/fragments/payments") >= 2
        assert "/dashboard/static/htmx.min.js" in app.paths

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
