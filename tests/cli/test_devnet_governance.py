"""The devnet's governance: five holder keys and two maintainer keys on disk, a funded treasury
wallet, and a sample treasury proposal taken through the whole flow with the command line
against the coordinator the devnet's own ``coordinator.toml`` describes (docs/devnet.md)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner

from owm_adapters.bootstrap.api import build_api
from owm_adapters.bootstrap.coordinator import build_coordinator
from owm_adapters.bootstrap.devnet import coordinator_settings, governance_keys, provision
from owm_adapters.bootstrap.settings import FlSection, KnowledgeSection
from owm_adapters.devnet.layout import DevnetLayout
from owm_adapters.storage.memory import memory_repositories
from owm_cli.main import cli
from owm_core.nodes.tiers import Tier
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer

PAYEE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[tuple[DevnetLayout, str]]:
    layout = DevnetLayout.at(tmp_path / "devnet")
    provision(layout, 1, now=1_800_000_000, traffic_interval_s=15, query_interval_s=60,
              tier=Tier.T1)  # fmt: skip
    settings = coordinator_settings(layout)
    settings = attrs.evolve(settings, fl=FlSection(enabled=False),
                            knowledge=KnowledgeSection(enabled=False))  # fmt: skip
    coordinator = build_coordinator(settings, store=memory_repositories(), slashing=False)
    services = build_api(coordinator, l402_secret=b"\x11" * 32).services
    server = ApiServer(create_app(services), "127.0.0.1:0", grace_s=1)  # type: ignore[arg-type]
    server.start()
    try:
        yield layout, f"http://127.0.0.1:{server.port}"
    finally:
        server.stop(1)


def owm(*args: str) -> Any:
    result = CliRunner().invoke(cli, [*args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_the_devnet_keeps_two_maintainer_and_five_holder_keys_private_on_disk(
    devnet: tuple[DevnetLayout, str],
) -> None:
    layout, _url = devnet
    keys = governance_keys(layout)
    files = [keys.maintainer(1), keys.maintainer(2),
             *(keys.holder(i) for i in range(1, 6)), *(keys.multisig(i) for i in range(1, 6))]
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    section = coordinator_settings(layout).governance
    assert len(section.maintainer_keys) == 2 and len(section.holder_multisig_keys) == 5


def test_a_sample_treasury_proposal_goes_through_the_whole_flow_with_the_cli(
    devnet: tuple[DevnetLayout, str], tmp_path: Path,
) -> None:
    layout, url = devnet
    keys = governance_keys(layout)
    data_dir = ["--data-dir", str(layout.root)]
    api = ["--api", url]
    m1, m2 = str(keys.maintainer(1)), str(keys.maintainer(2))
    created = owm("gov", "propose", *api, "--key", m1, "--title", "Fund a GPU for the devnet",
                  "--description", "A sample treasury proposal.", "--type", "treasury",
                  "--plan", "Pay the vendor.", "--amount-sat", "15000000",
                  "--payout-address", PAYEE, "--json")  # fmt: skip
    pid = json.loads(created.output)["proposal"]["proposal_id"]
    owm("gov", "comment", pid, *api, "--key", m2, "--text", "Which GPU?")
    for i in range(1, 6):
        owm("gov", "ack", pid, *api, "--key", str(keys.holder(i)))
    owm("devnet", "gov-time", "--days", "15", *data_dir)
    owm("gov", "close", pid, *api, "--key", m1, "--outcome", "accepted")
    psbt = tmp_path / "gpu.psbt"
    owm("treasury", "psbt", "create", pid, *api, "--key", str(keys.holder(1)), "--out", str(psbt))
    signed = []
    for i in (1, 2, 3):
        out = tmp_path / f"gpu.{i}.psbt"
        owm("treasury", "psbt", "sign", str(psbt), "--key", str(keys.multisig(i)),
            "--out", str(out))  # fmt: skip
        signed.append(str(out))
    owm("treasury", "psbt", "combine", pid, *signed, *api)
    sent = owm("treasury", "psbt", "broadcast", pid, *api, "--key", m1, "--json")
    proposal = json.loads(sent.output)["proposal"]
    assert proposal["status"] == "executed" and len(proposal["txid"]) == 64
    verified = owm("gov", "log", "verify", "--url", url, "--json")
    assert json.loads(verified.output)["ok"] is True
