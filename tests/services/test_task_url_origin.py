"""Task URLs lie on the coordinator's own API origin: a task whose input names any other
upload target is refused at submission with nothing stored (no SSRF, SRS-SEC-06)."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from owm_adapters.bootstrap.coordinator import advertised_api_url
from owm_adapters.bootstrap.settings import CoordinatorSection, CoordinatorSettings, FlSection
from owm_adapters.services.coordinator.market import check_input_urls
from owm_core.errors import InvalidValue
from owm_core.market.tasks import TaskRequest
from owm_core.nodes.tiers import Tier
from tests.services.fl_world import UPLOAD_URL, build_fl_world

OWN = UPLOAD_URL  # the world's coordinator advertises it


def training(upload_url: object) -> bytes:
    return json.dumps({"sub_model": "owm-geo", "round": 1, "partition_id": 0, "epochs": 1,
                       "lr": 0.1, "batch_size": 16, "seed": 1, "upload_url": upload_url}).encode()


def request(task_id: str) -> TaskRequest:
    return TaskRequest(task_id=task_id, task_type="fl_training", input_schema_id="owm.fl.train",
                       input_schema_version=1, min_tier=Tier.T1, min_vram_mb=0, min_ram_mb=0,
                       gpu_required=False, max_price_msat=1_000)


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/",
    "http://127.0.0.1:6379/",          # the coordinator's host, another port
    "https://127.0.0.1:9/v1/fl/updates",  # another scheme
    "http://192.168.1.10:9/v1/fl/updates",
    "http://user@127.0.0.1:9/v1/fl/updates",
    "gopher://127.0.0.1:9/",
])
def test_a_task_uploading_off_the_coordinators_origin_is_refused_with_nothing_stored(
    tmp_path: Path, target: str
):
    world = build_fl_world(tmp_path)
    with pytest.raises(InvalidValue) as refused:
        world.coordinator.submit_task(request("ssrf-2"), training(target))
    assert refused.value.field == "input.upload_url"
    assert world.repos.tasks.get("ssrf-2:0") is None
    assert world.repos.task_inputs.get("ssrf-2") is None


def test_a_task_uploading_to_the_coordinators_own_origin_is_taken(tmp_path: Path):
    world = build_fl_world(tmp_path)
    replicas = world.coordinator.submit_task(request("own-2"), training(OWN))
    assert replicas and world.repos.tasks.get(replicas[0].task_id) is not None


def test_without_an_advertised_api_no_task_url_is_taken_but_other_tasks_are():
    with pytest.raises(InvalidValue, match="advertises no API origin"):
        check_input_urls("fl_training", training(OWN), "")
    with pytest.raises(InvalidValue) as refused:
        check_input_urls("fl_training", training(["http://x"]), OWN)
    assert refused.value.field == "input.upload_url"
    check_input_urls("fl_training", json.dumps({"round": 1}).encode(), "")
    check_input_urls("inference", b"not even json", "")


def test_the_advertised_api_is_the_fl_upload_url_or_the_one_api_listen_implies():
    settings = CoordinatorSettings(coordinator=CoordinatorSection(api_listen="10.1.2.3:8000"),
                                   fl=FlSection(enabled=False))
    assert advertised_api_url(settings, None)() == "http://10.1.2.3:8000/v1/fl/updates"
    public = attrs.evolve(settings, fl=FlSection(
        enabled=False, upload_url="https://coordinator.example/v1/fl/updates"))
    assert advertised_api_url(public, None)() == "https://coordinator.example/v1/fl/updates"
