"""``owm data validate`` and ``owm data submit`` (SRS 2.2): local validation with one-line
errors, and a real submission over HTTP to a served API on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from owm_adapters.knowledge.minilm import HashingEmbedder
from owm_adapters.knowledge.qdrant import MemoryVectorStore
from owm_adapters.services.knowledge import KnowledgeBase
from owm_cli.main import cli
from owm_core.knowledge.retrieval import DataCredit
from owm_server.http.app import create_app
from owm_server.http.serve import ApiServer
from tests.server.http.world import World, build_world

DATASET = {
    "name": "rivers",
    "sub_models": ["owm-geo"],
    "source": "atlas",
    "licence": "CC0-1.0",
    "documents": [{"title": "Nile", "text": "The Nile flows north into the Mediterranean Sea."}],
}


@pytest.fixture
def dataset_file(tmp_path: Path) -> Path:
    path = tmp_path / "rivers.json"
    path.write_text(json.dumps(DATASET))
    return path


def test_a_valid_file_is_summarised_with_its_id_and_digest(dataset_file: Path) -> None:
    result = CliRunner().invoke(cli, ["data", "validate", str(dataset_file)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("valid: ds-")
    assert "1 documents, 1 passages for owm-geo; licences CC0-1.0; sha256 " in result.output


def test_an_invalid_file_is_one_error_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**DATASET, "licence": None, "source": "x"}))
    result = CliRunner().invoke(cli, ["data", "validate", str(bad)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: documents[0].licence: is required (here or as the dataset's licence)"
    ]


def test_the_demo_datasets_are_valid() -> None:
    root = Path(__file__).parents[2] / "owm_adapters" / "knowledge" / "demo_data"
    for name in ("owm-geo.json", "owm-science.json", "owm-history.json"):
        result = CliRunner().invoke(cli, ["data", "validate", str(root / name)])
        assert result.exit_code == 0, result.output
        assert "licences CC0-1.0" in result.output


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, str]]:
    for world in build_world(tmp_path):
        kb = KnowledgeBase(world.repos, HashingEmbedder(), MemoryVectorStore())
        kb.register_sub_model("owm-geo", "Geography of the world.", world.clock.now())
        world.serve(knowledge=kb)
        server = ApiServer(create_app(world.services), "127.0.0.1:0", grace_s=1)
        server.start()
        try:
            yield world, f"http://127.0.0.1:{server.port}"
        finally:
            server.stop(2)


def test_submit_posts_the_dataset_and_reports_what_the_coordinator_stored(
    served: tuple[World, str], dataset_file: Path
) -> None:
    world, url = served
    secret = world.api_key("alice")["Authorization"].removeprefix("Bearer ")
    result = CliRunner().invoke(
        cli, ["data", "submit", str(dataset_file), "--api", url, "--api-key", secret]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("accepted: ds-")
    assert " by alice: 1 documents, 1 passages for owm-geo" in result.output
    [record] = world.services.knowledge.datasets()  # type: ignore[union-attr]
    assert record.contributor == "alice"
    other = world.api_key("eve")["Authorization"].removeprefix("Bearer ")
    refused = CliRunner().invoke(
        cli, ["data", "submit", str(dataset_file), "--api", url, "--api-key", other]
    )
    assert refused.exit_code != 0
    assert "the coordinator refused it: 409" in refused.output


def test_submit_with_a_wrong_key_fails_in_one_line(
    served: tuple[World, str], dataset_file: Path
) -> None:
    _, url = served
    result = CliRunner().invoke(
        cli, ["data", "submit", str(dataset_file), "--api", url, "--api-key", "owm_wrong"]
    )
    assert result.exit_code != 0
    assert "the coordinator refused it: 401" in result.output


def test_a_contributor_names_a_payee_and_reads_credits_and_payouts_over_the_api(
    served: tuple[World, str],
) -> None:
    world, url = served
    secret = world.api_key("alice")["Authorization"].removeprefix("Bearer ")
    node = "02" + "ab" * 32
    world.repos.data_credits.add(
        "qry_1", [DataCredit("alice", "ds-" + "a" * 24, 7_000, 2)], world.clock.now()
    )
    named = CliRunner().invoke(cli, ["data", "payee", node, "--api", url, "--api-key", secret])
    assert named.exit_code == 0, named.output
    assert f"alice: credited 7000 msat, paid 0 msat, owed 7000 msat; paid to {node}" in named.output
    shown = CliRunner().invoke(cli, ["data", "credits", "--api", url, "--api-key", secret,
                                     "--json"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    answer = json.loads(shown.output)
    assert answer["credits"][0]["query_id"] == "qry_1" and answer["ln_node"] == node
    bad = CliRunner().invoke(cli, ["data", "payee", "nope", "--api", url, "--api-key", secret])
    assert bad.exit_code != 0 and "ln_node" in bad.output
