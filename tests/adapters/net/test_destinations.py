"""No SSRF at the edge: URLs are split strictly, names are judged by what they resolve to."""

from __future__ import annotations

import ipaddress

import pytest

from owm_adapters.net.destinations import (
    Resolver,
    check_node_target,
    check_task_url,
    origin_of,
    resolve,
)
from owm_core.access.destinations import DestinationPolicy, IPAddress
from owm_core.errors import InvalidValue, PolicyViolation

API = "https://api.owm.example"


def fake_dns(answers: dict[str, list[str]]) -> Resolver:
    def lookup(host: str, _port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(a) for a in answers.get(host, [])]

    return lookup


def test_an_upload_url_on_the_api_origin_is_accepted() -> None:
    check_task_url("https://api.owm.example:443/v1/tasks/t1/output", API)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "https://api.owm.example@127.0.0.1/",
        "https://api.owm.example:8443/",
        "https://api.owm.example.attacker.test/",
        "ftp://api.owm.example/",
        "https://api.owm.example:99999/",
        "https:///nohost",
        "https://api.owm.example/a b",
    ],
)
def test_urls_off_the_api_origin_or_malformed_are_refused(url: str) -> None:
    with pytest.raises(InvalidValue) as err:
        check_task_url(url, API, field="download_url")
    assert err.value.field == "download_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0x7f000001:8080/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://10.1.2.3/",
        "http://localhost/",
    ],
)
def test_a_node_refuses_internal_targets(url: str) -> None:
    with pytest.raises(PolicyViolation):
        check_node_target(url, DestinationPolicy(), fake_dns({"localhost": ["127.0.0.1"]}))


def test_a_name_that_resolves_inside_is_refused_and_one_outside_is_returned() -> None:
    dns = fake_dns({"rebind.test": ["93.184.216.34", "127.0.0.1"], "ok.test": ["93.184.216.34"]})
    with pytest.raises(PolicyViolation):
        check_node_target("https://rebind.test/x", DestinationPolicy(), dns)
    assert check_node_target("https://ok.test/x", DestinationPolicy(), dns) == [
        ipaddress.ip_address("93.184.216.34")
    ]


def test_the_devnet_reaches_its_loopback_coordinator() -> None:
    addresses = check_node_target("http://127.0.0.1:8080/", DestinationPolicy.devnet())
    assert addresses == [ipaddress.ip_address("127.0.0.1")]


def test_the_system_resolver_answers_for_localhost_and_not_for_nonsense() -> None:
    assert all(a.is_loopback for a in resolve("localhost", 80))
    assert resolve("no-such-host.invalid", 80) == []


def test_origins_ignore_path_and_query() -> None:
    assert str(origin_of("HTTPS://API.owm.example/a?b#c")) == "https://api.owm.example:443"
