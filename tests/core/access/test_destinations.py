"""No SSRF: task URLs stay on the coordinator's origin; nodes refuse internal targets."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.access.destinations import (
    DestinationPolicy,
    Origin,
    TargetKind,
    classify,
    parse_ip_host,
    require_own_origin,
)
from owm_core.errors import InvalidValue, PolicyViolation

STRICT = DestinationPolicy()


def v4_in(network: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
    net = ipaddress.IPv4Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv4Address
    )


def v6_in(network: str) -> st.SearchStrategy[ipaddress.IPv6Address]:
    net = ipaddress.IPv6Network(network)
    return st.integers(int(net.network_address), int(net.broadcast_address)).map(
        ipaddress.IPv6Address
    )


internal_v4 = st.one_of(
    v4_in("127.0.0.0/8"),
    v4_in("10.0.0.0/8"),
    v4_in("172.16.0.0/12"),
    v4_in("192.168.0.0/16"),
    v4_in("169.254.0.0/16"),
    v4_in("224.0.0.0/4"),
    v4_in("0.0.0.0/8"),
    v4_in("100.64.0.0/10"),
)
internal_v6 = st.one_of(
    st.just(ipaddress.IPv6Address("::1")),
    st.just(ipaddress.IPv6Address("::")),
    v6_in("fe80::/10"),
    v6_in("fc00::/7"),
    v6_in("ff00::/8"),
)
public_v4 = (
    st.integers(0, 2**32 - 1)
    .map(ipaddress.IPv4Address)
    .filter(lambda a: a.is_global and not a.is_multicast)
)


def spellings(address: ipaddress.IPv4Address) -> list[str]:
    """Ways to write one IPv4 address in a URL host that inet_aton accepts."""
    n = int(address)
    a, b, c, d = address.packed
    return [
        str(address),
        str(n),
        hex(n),
        f"0{n:o}",
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{hex(a)}.{hex(b)}.{hex(c)}.{hex(d)}",
        f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"[::ffff:{address}]",
        f"::ffff:{address}",
        f"[64:ff9b::{address}]",
    ]


@given(address=internal_v4, data=st.data())
@settings(max_examples=300)
def test_every_spelling_of_an_internal_ipv4_target_is_refused(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    host = data.draw(st.sampled_from(spellings(address)))
    with pytest.raises(PolicyViolation):
        STRICT.check(host)


@given(address=internal_v6)
def test_internal_ipv6_targets_are_refused(address: ipaddress.IPv6Address) -> None:
    with pytest.raises(PolicyViolation):
        STRICT.check(f"[{address}]")


@given(address=public_v4, data=st.data())
@settings(max_examples=200)
def test_public_addresses_pass_in_any_spelling(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    host = data.draw(st.sampled_from(spellings(address)[:8]))
    STRICT.check(host)
    assert parse_ip_host(host) == address


@given(n=st.integers(0, 2**32 - 1), data=st.data())
@settings(max_examples=300)
def test_ipv4_hosts_are_read_exactly_as_inet_aton_reads_them(n: int, data: st.DataObject) -> None:
    host = data.draw(st.sampled_from(spellings(ipaddress.IPv4Address(n))[:8]))
    assert parse_ip_host(host) == ipaddress.IPv4Address(socket.inet_aton(host))


@pytest.mark.parametrize("host", ["169.254.169.254", "[fd00:ec2::254]", "metadata.google.internal"])
def test_cloud_metadata_is_refused_even_on_the_devnet(host: str) -> None:
    with pytest.raises(PolicyViolation, match="cloud-metadata"):
        DestinationPolicy.devnet().check(host, [ipaddress.ip_address("169.254.169.254")])


def test_the_devnet_allowance_opens_loopback_and_private_networks() -> None:
    DestinationPolicy.devnet().check("127.0.0.1")
    DestinationPolicy.devnet().check("localhost", [ipaddress.ip_address("127.0.0.1")])
    DestinationPolicy.devnet().check("10.0.0.5")
    with pytest.raises(PolicyViolation):
        STRICT.check("localhost", [ipaddress.ip_address("8.8.8.8")])


def test_a_name_is_judged_by_every_address_it_resolves_to() -> None:
    public, private = ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")
    STRICT.check("example.org", [public])
    with pytest.raises(PolicyViolation):
        STRICT.check("example.org", [public, private])
    with pytest.raises(PolicyViolation):
        STRICT.check("example.org", [])


@pytest.mark.parametrize("host", ["1.2.3.999", "08.0.0.1", "4294967296", "0x", "[::g]"])
def test_malformed_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(InvalidValue):
        STRICT.check(host)


def test_6to4_and_teredo_wrapped_internal_addresses_are_refused() -> None:
    assert classify(ipaddress.ip_address("2002:7f00:1::")) is TargetKind.LOOPBACK
    teredo = ipaddress.ip_address("2001:0:4136:e378:8000:63bf:f5ff:fffe")  # client 10.0.0.1
    assert classify(teredo) is TargetKind.PRIVATE


API = Origin.of("https", "api.owm.example", None)


@pytest.mark.parametrize(
    ("scheme", "host", "port"),
    [
        ("https", "API.owm.example.", None),
        ("HTTPS", "api.owm.example", 443),
    ],
)
def test_urls_on_the_coordinators_own_origin_are_accepted(
    scheme: str, host: str, port: int | None
) -> None:
    require_own_origin(Origin.of(scheme, host, port), API)


@pytest.mark.parametrize(
    ("scheme", "host", "port"),
    [
        ("http", "api.owm.example", None),
        ("https", "api.owm.example", 8443),
        ("https", "api.owm.example.evil.test", None),
        ("https", "169.254.169.254", None),
        ("https", "127.0.0.1", None),
    ],
)
def test_urls_elsewhere_are_refused_naming_the_field(
    scheme: str, host: str, port: int | None
) -> None:
    with pytest.raises(InvalidValue) as err:
        require_own_origin(Origin.of(scheme, host, port), API, field="download_url")
    assert err.value.field == "download_url"


def test_an_origin_needs_an_http_scheme() -> None:
    with pytest.raises(InvalidValue):
        Origin.of("file", "x", None)


def test_ip_origins_compare_by_address_not_spelling() -> None:
    assert Origin.of("http", "0x7f000001", 8080) == Origin.of("http", "127.0.0.1", 8080)
    assert str(Origin.of("http", "[::1]", 80)) == "http://[::1]:80"
