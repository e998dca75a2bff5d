"""The Node data model of the registry (spec 5.1) and its values: Lightning URIs, onion
addresses, node liveness."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.nodes.registry import Liveness, LnNodeUri, Node, NodeStatus, onion_address
from owm_core.nodes.tiers import Tier

PUBKEY = "02" + "ab" * 32
ONION = "a" * 56 + ".onion"

pubkeys = st.builds(
    lambda prefix, body: prefix + body.hex(),
    st.sampled_from(["02", "03"]),
    st.binary(min_size=32, max_size=32),
)
hosts = st.one_of(
    st.just("node.example.org"),
    st.just(ONION),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    st.just("[2001:db8::1]"),
)


def make_node(**changes: object) -> Node:
    values: dict[str, object] = {
        "node_id": "n" + "0" * 40,
        "public_key": "cd" * 32,
        "ln_node_uri": LnNodeUri.parse(f"{PUBKEY}@127.0.0.1:9735"),
        "tier": Tier.T1,
        "vram_mb": 0,
        "ram_mb": 16_384,
        "bandwidth_mbps": 100,
        "registered_at": 1_000,
        "last_heartbeat": 1_000,
    }
    values.update(changes)
    return Node(**values)  # type: ignore[arg-type]


@given(pubkey=pubkeys, host=hosts, port=st.integers(1, 65535))
def test_every_valid_uri_survives_a_round_trip_through_text(pubkey: str, host: str, port: int):
    uri = LnNodeUri.parse(f"{pubkey}@{host}:{port}")
    assert LnNodeUri.parse(str(uri)) == uri
    assert uri.is_onion == host.endswith(".onion")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no-at-sign",
        f"{PUBKEY}@host",  # no port
        f"{PUBKEY}@host:notaport",
        f"{PUBKEY}@host:0",
        f"{PUBKEY}@host:70000",
        "04" + "ab" * 32 + "@host:9735",  # uncompressed prefix
        "02" + "ab" * 31 + "@host:9735",  # too short
        f"{PUBKEY}@bad_host!:9735",
        f"{PUBKEY}@{'b' * 55}.onion:9735",  # v2-length onion is not v3
    ],
)
def test_malformed_lightning_uris_are_refused_naming_the_field(text: str):
    with pytest.raises(InvalidValue) as raised:
        LnNodeUri.parse(text)
    assert raised.value.field in {"ln_node_uri", "pubkey", "host", "port"}


def test_onion_addresses_must_be_version_3():
    assert onion_address(ONION.upper()) == ONION
    with pytest.raises(InvalidValue, match="onion_address"):
        onion_address("abc.onion")


@given(silence=st.integers(0, 10_000), interval=st.integers(1, 600), missed=st.integers(1, 10))
def test_a_node_is_offline_exactly_when_it_missed_the_allowed_heartbeats(
    silence: int, interval: int, missed: int
):
    liveness = Liveness(heartbeat_interval_s=interval, missed_heartbeats=missed)
    node = make_node()
    status = node.status(now=1_000 + silence, liveness=liveness)
    expected = NodeStatus.OFFLINE if silence > interval * missed else NodeStatus.ONLINE
    assert status is expected


def test_a_suspended_node_stays_suspended_whatever_its_heartbeats():
    node = make_node(suspended=True).heard_from(2_000)
    assert node.status(now=2_000, liveness=Liveness()) is NodeStatus.SUSPENDED


@given(times=st.lists(st.integers(1_000, 10**9), min_size=1, max_size=20))
def test_heartbeats_never_move_the_last_seen_time_backwards(times: list[int]):
    node = make_node()
    for at in times:
        node = node.heard_from(at)
    assert node.last_heartbeat == max(times)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("total_sats_earned", 1.5),
        ("total_sats_earned", -1),
        ("reliability_ppm", 1_000_001),
        ("public_key", "xyz"),
        ("tier", "t1"),
        ("last_heartbeat", 999),
        ("onion_address", "nope.onion"),
        ("suspended", 1),
    ],
)
def test_invalid_node_fields_are_refused_by_name(field: str, value: object):
    with pytest.raises(InvalidValue) as raised:
        make_node(**{field: value})
    assert raised.value.field == field
