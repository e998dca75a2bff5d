"""``POST /v1/query``, ``POST /v1/query/stream`` (SSE) and ``GET /v1/query/{query_id}`` over the
in-process conglomerate (SRS 4.8.3, SRS-API-04/05)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from starlette.testclient import TestClient

from owm_adapters.bootstrap.api import build_api
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.api import ApiConfig, QueryShare
from owm_adapters.services.queries import QueryConfig
from owm_core.access import l402
from owm_core.access.api_keys import Plan
from owm_core.knowledge.routing import CALIBRATION, MISSING_PENALTY
from owm_server.http.app import create_app
from tests.server.http.world import build_world
from tests.server.query_harness import conglomerate

SRS_FIELDS = {"query_id", "answer", "sub_models_used", "data_sources", "confidence",
              "model_version", "ots_verified", "latency_ms", "cost_sats"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    with conglomerate(tmp_path, ({}, {})) as world:
        services = build_api(
            world.app, l402_secret=b"\x22" * 32, config=ApiConfig(cache_ttl_ms=0),
            knowledge=world.knowledge, query_config=QueryConfig(threshold=0.0, timeout_s=5.0),
        ).services
        _key, secret = services.access.create_api_key("acme", Plan.COMMERCIAL)
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield client, {"Authorization": f"Bearer {secret}"}


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream body into (event, data) pairs."""
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


def test_a_query_is_answered_with_the_srs_schema_and_can_be_read_back(api):
    client, keys = api
    reply = client.post("/v1/query", json={"query": "What is the capital of France?",
                                           "context": {}, "max_tokens": 200}, headers=keys)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) >= SRS_FIELDS
    assert body["query_id"].startswith("qry_") and body["answered"] is True
    assert "Paris" in body["answer"] and isinstance(body["cost_sats"], int)
    assert 0.0 <= body["confidence"] <= 1.0
    assert reply.headers["x-owm-model-version"]  # SRS-API-01 on query answers too
    stored = client.get(f"/v1/query/{body['query_id']}", headers=keys)
    assert stored.status_code == 200 and stored.json() == body


def test_the_stream_endpoint_sends_server_sent_events_ending_with_the_answer(api):
    client, keys = api
    with client.stream("POST", "/v1/query/stream", headers=keys,
                       json={"query": "When did the Western Roman Empire fall?"}) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        text = "".join(reply.iter_text())
    events = events_of(text)
    kinds = [k for k, _ in events]
    assert kinds[0] == "retrieval" and kinds[-1] == "answer"
    assert kinds.count("partial") == len(events[0][1]["sub_models"])
    answer = events[-1][1]
    assert set(answer) >= SRS_FIELDS and answer["query_id"] == events[0][1]["query_id"]
    assert client.get(f"/v1/query/{answer['query_id']}", headers=keys).json() == answer


def test_stream_true_on_the_plain_endpoint_also_streams(api):
    client, keys = api
    reply = client.post("/v1/query", json={"query": "What is photosynthesis?", "stream": True},
                        headers=keys)
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert events_of(reply.text)[-1][0] == "answer"


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "body.query"), ({"query": ""}, "body.query"), ({"query": "x", "max_tokens": 0},
                                                         "body.max_tokens"),
     ({"query": "x", "temperature": 1}, "body.temperature"), ({"query": "x" * 2_001},
                                                               "body.query")],
)
def test_bad_query_bodies_are_problem_documents_naming_the_field(api, body, field):
    client, keys = api
    for path in ("/v1/query", "/v1/query/stream"):
        reply = client.post(path, json=body, headers=keys)
        assert reply.status_code == 422
        assert reply.headers["content-type"] == "application/problem+json"
        assert reply.json()["field"] == field


def test_an_unknown_query_id_is_a_404_problem(api):
    client, keys = api
    reply = client.get("/v1/query/qry_nope", headers=keys)
    assert reply.status_code == 404 and reply.json()["code"] == "not-found"


def test_a_query_needs_a_credential(api):
    client, _keys = api
    assert client.post("/v1/query", json={"query": "hi"}).status_code in {401, 402}


class ParisReader:
    """A transformer-reader twin of version ``owm-geo@abc``: answers with "Paris" wherever a
    passage holds it."""

    def read(self, sub_model: str, query: str, passages: Any, top_k: int) -> Any:
        spans = [(pid, text.find("Paris"), text.find("Paris") + 5, 0.9)
                 for pid, text in passages if "Paris" in text]
        return ("owm-geo@abc", spans[:top_k]) if spans else None


def test_a_model_answer_cites_its_sources_calibrated_confidence_and_reader_version(
    tmp_path: Path,
):
    """SRS 4.8.3 over HTTP when a sub-model's transformer reader answers: the span leads the
    answer, each citation names its source, passage, span and the version that read it, the
    confidence is the calibration of the cited evidence, and the reader's version is the
    answer's model version (not the release's OTS status)."""
    with conglomerate(tmp_path, ({}, {})) as world:
        services = build_api(
            world.app, l402_secret=b"\x22" * 32, config=ApiConfig(cache_ttl_ms=0),
            knowledge=world.knowledge, query_config=QueryConfig(threshold=0.0, timeout_s=5.0),
            readers=ParisReader(),
        ).services
        _key, secret = services.access.create_api_key("acme", Plan.COMMERCIAL)
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            reply = client.post("/v1/query", json={"query": "What is the capital of France?"},
                                headers={"Authorization": f"Bearer {secret}"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    lead = body["citations"][0]
    assert body["answered"] and body["answer"].startswith("Paris — ")
    assert lead["answer"] == "Paris" and "Paris" in lead["text"]
    assert lead["sub_model"] == "owm-geo" and lead["model_version"] == "owm-geo@abc"
    assert lead["passage_id"] and lead["source"] == body["data_sources"][0]
    assert "owm-geo@abc" in body["model_version"].split(",")
    assert body["ots_verified"] is False
    completeness = 1.0 - MISSING_PENALTY * len(body["missing_sub_models"]) / len(
        body["sub_models_used"] + body["missing_sub_models"]
    )
    assert body["confidence"] == round(CALIBRATION(lead["strength"]) * completeness, 4)
    assert 0.0 < body["confidence"] <= 1.0


# --------------------------------------------------------------------------- per-query pricing


@pytest.fixture
def priced(tmp_path: Path) -> Iterator[tuple[TestClient, SimLedger, dict[str, str]]]:
    """Per-query pricing on: a 10-sat token pays for two 4-sat queries."""
    config = ApiConfig(cache_ttl_ms=0, l402_price_msat=10_000, query_price_msat=4_000)
    with conglomerate(tmp_path, ({}, {})) as world:
        services = build_api(
            world.app, l402_secret=b"\x22" * 32, config=config, knowledge=world.knowledge,
            query_config=QueryConfig(threshold=0.0, timeout_s=5.0),
        ).services
        _key, secret = services.access.create_api_key("acme", Plan.COMMERCIAL)
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield client, SimLedger(tmp_path / "ln.sqlite3"), {"Authorization": f"Bearer {secret}"}


def pay_for(client: TestClient, ledger: SimLedger, path: str = "/v1/query") -> dict[str, str]:
    """Be refused with 402, pay the invoice, and present the token."""
    refused = client.post(path, json={"query": "hi"})
    assert refused.status_code == 402
    offer = l402.parse_challenge(refused.headers["WWW-Authenticate"])
    payer = ledger.add_node("payer")
    if not ledger.channels_of(payer, None):
        ledger.open_channel(payer, ledger.add_node("treasury"), 1_000_000)
    paid = ledger.lightning("payer").pay(offer.invoice, max_fee_msat=10_000, timeout_s=5)
    assert paid.preimage is not None
    credential = l402.Credential(offer.macaroon, bytes.fromhex(paid.preimage))
    return {"Authorization": l402.format_authorization(credential)}


def test_with_per_query_pricing_a_token_buys_as_many_queries_as_it_paid_for(priced):
    client, ledger, _keys = priced
    token = pay_for(client, ledger)
    question = {"query": "What is the capital of France?"}

    first = client.post("/v1/query", json=question, headers=token)
    second = client.post("/v1/query", json=question, headers=token)
    spent = client.post("/v1/query", json=question, headers=token)

    assert (first.status_code, first.headers["OWM-Credit-Msat"]) == (200, "6000")
    assert (second.status_code, second.headers["OWM-Credit-Msat"]) == (200, "2000")
    assert spent.status_code == 402 and spent.json()["code"] == "payment-required"
    assert "4000 msat" in spent.json()["detail"] and spent.json()["amount_msat"] == 10_000
    challenge = l402.parse_challenge(spent.headers["WWW-Authenticate"])
    assert challenge.invoice == spent.json()["invoice"]
    stored = client.get(f"/v1/query/{first.json()['query_id']}", headers=token)
    assert stored.status_code == 200 and "OWM-Credit-Msat" not in stored.headers  # reads are free
    again = client.post("/v1/query", json=question, headers=pay_for(client, ledger))
    assert (again.status_code, again.headers["OWM-Credit-Msat"]) == (200, "6000")


def test_with_per_query_pricing_api_keys_keep_their_quotas_and_pay_nothing_per_query(priced):
    client, _ledger, keys = priced
    for _ in range(3):
        reply = client.post("/v1/query", json={"query": "What is photosynthesis?"}, headers=keys)
        assert reply.status_code == 200 and "OWM-Credit-Msat" not in reply.headers


def test_with_per_query_pricing_a_query_that_fails_costs_nothing(tmp_path: Path):
    worlds = build_world(tmp_path, ApiConfig(cache_ttl_ms=0, query_price_msat=10_000))
    world = next(worlds)  # no knowledge base: every query fails with 503
    token = pay_for(world.client, world.ledger)

    replies = [world.client.post("/v1/query", json={"query": "hi"}, headers=token)
               for _ in range(3)]

    assert [r.json()["code"] for r in replies] == ["conglomerate-unavailable"] * 3
    worlds.close()


def test_one_token_cannot_draw_more_than_its_share_of_the_treasurys_daily_query_budget(
    tmp_path: Path,
) -> None:
    """A 10-sat L402 token used to be good for 20,000 treasury-paid queries a day, each up to
    ``most_msat`` of the ``queries`` budget: one caller could spend it for everyone. Each query
    holds its worst case while it runs and gives back what it did not cost, so the token is
    refused once what its queries cost leaves no room for one more worst case."""
    with conglomerate(tmp_path, ({}, {})) as world:
        services = build_api(
            world.app, l402_secret=b"\x22" * 32, config=ApiConfig(cache_ttl_ms=0),
            knowledge=world.knowledge, query_config=QueryConfig(threshold=0.0, timeout_s=5.0),
        ).services
        assert services.query_share is not None
        most = services.query_share.most_msat
        assert services.query_share.share_msat == 10_000_000  # 1 % of the default budget
        share = 2 * most
        services = attrs.evolve(services, query_share=QueryShare(share, most))
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            token = pay_for(client, SimLedger(tmp_path / "ln.sqlite3"))
            question = {"query": "What is the capital of France?"}
            replies = []
            while len(replies) < 12 and (not replies or replies[-1].status_code == 200):
                replies.append(client.post("/v1/query", json=question, headers=token))
            refused = client.post("/v1/query/stream", json=question, headers=token)
            _key, secret = services.access.create_api_key("other", Plan.COMMERCIAL)
            other = client.post("/v1/query", json=question,
                                headers={"Authorization": f"Bearer {secret}"})  # fmt: skip
    *served, last = replies
    cost_msat = served[0].json()["cost_sats"] * 1000
    assert 0 < cost_msat < most and all(r.status_code == 200 for r in served)
    # what the answered queries cost, plus one more worst case, fits the share; one more does not
    assert len(served) == (share - most) // cost_msat + 1 > share // most
    assert last.status_code == refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "rate-limited" and "resets at 00:00 UTC" in problem["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert other.status_code == 200  # the budget is still there for everyone else
