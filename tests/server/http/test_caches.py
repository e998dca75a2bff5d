"""Flooding the API's caches (SRS-SEC-04, SRS-PERF-08): junk query strings, many distinct
parameters and random bearer tokens must not push out the answers everyone asks for."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from starlette.responses import Response

from owm_adapters.services.api import ApiConfig
from owm_core.access.api_keys import Plan
from owm_core.errors import SignatureInvalid
from owm_server.http import v1
from owm_server.http.app import RenderedCache, cache_key
from tests.server.http.world import World, build_world


@pytest.fixture
def cached_world(tmp_path: Path) -> Iterator[World]:
    yield from build_world(tmp_path, ApiConfig(cache_ttl_ms=60_000, auth_cache_ttl_ms=60_000))


def _counting(
    world: World, operation_id: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[object], dict[str, str]]:
    """Serve the API with ``operation_id``'s handler counting its calls: the calls, and the
    headers of a commercial key (no daily limit in the way)."""
    operations = v1.operations
    calls: list[object] = []

    def wrap(handler: Callable[..., Any]) -> Callable[..., Any]:
        def counted(call: Any) -> Any:
            calls.append(call)
            return handler(call)

        return counted

    def counted_operations() -> list[Any]:
        return [attrs.evolve(op, handler=wrap(op.handler)) if op.operation_id == operation_id
                else op for op in operations()]  # fmt: skip

    assert any(op.operation_id == operation_id for op in operations())

    monkeypatch.setattr(v1, "operations", counted_operations)
    world.serve()
    return calls, world.api_key(plan=Plan.COMMERCIAL)


def test_junk_query_parameters_make_no_cache_entries_so_the_hot_answer_stays_cached(
    cached_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = cached_world
    calls, key = _counting(world, "networkStats", monkeypatch)
    hot = world.client.get("/v1/network/stats", headers=key)
    assert hot.status_code == 200 and len(calls) == 1
    for i in range(300):
        junk = world.client.get(f"/v1/network/stats?junk={i}&x{i}=y", headers=key)
        assert junk.status_code == 200 and junk.content == hot.content
    again = world.client.get("/v1/network/stats", headers=key)
    assert again.content == hot.content
    assert len(calls) == 1, f"{len(calls)} computations for one answer"


def test_a_known_parameter_is_cached_as_parsed(
    cached_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = cached_world
    calls, key = _counting(world, "networkNodes", monkeypatch)
    for query in ("limit=20", "limit=020", "limit=20&junk=1", "junk=2&limit=20"):
        assert world.client.get(f"/v1/network/nodes?{query}", headers=key).status_code == 200
    assert len(calls) == 1
    assert world.client.get("/v1/network/nodes?limit=21", headers=key).status_code == 200
    assert len(calls) == 2


def test_a_flood_of_distinct_requests_pushes_out_only_entries_nobody_asked_for_since(
    world: World,
) -> None:
    cache = RenderedCache(attrs.evolve(world.services, config=ApiConfig(cache_ttl_ms=60_000)),
                          max_entries=8)  # fmt: skip
    hot = cache_key({}, {"limit": 20})
    cache.put(hot, Response(b'{"hot": true}', media_type="application/json"))
    for start in range(1_000):
        cache.put(cache_key({}, {"start": start}), Response(b"{}", media_type="application/json"))
        if start % 5 == 0:
            served = cache.get(hot)
            assert served is not None and served.body == b'{"hot": true}', start
        assert len(cache) <= 8
    assert cache.get(cache_key({}, {"start": 0})) is None  # the cold ones went


def test_a_flood_of_random_api_keys_does_not_push_out_a_working_key(
    cached_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    access, keys = cached_world.services.access, cached_world.repos.api_keys
    _key, secret = access.create_api_key("acme")
    lookups: list[str] = []
    lookup = keys.get_by_secret_sha256

    def counted(digest: str) -> Any:
        lookups.append(digest)
        return lookup(digest)

    monkeypatch.setattr(keys, "get_by_secret_sha256", counted)
    assert access.caller_by_api_key(secret).owner == "acme"
    assert len(lookups) == 1
    for _ in range(12_000):  # more than the old cache's 10,000, which then cleared itself
        with pytest.raises(SignatureInvalid, match="unknown or revoked"):
            access.caller_by_api_key("owm_" + os.urandom(24).hex())
    lookups.clear()
    assert access.caller_by_api_key(secret).owner == "acme"
    assert lookups == [], "the working key was looked up again after the flood"
