"""OWM's Flower App under Flower's deployment engine: a real SuperLink and two SuperNodes.

Starts ``flower-superlink`` and two ``flower-supernode`` processes on 127.0.0.1 (``--insecure``,
no runtime dependency installation), submits the app with ``flwr run`` and checks the same
contract as the in-process engine. All processes are stopped in teardown, also on failure.
Flower's deployment engine polls every few seconds, so one round takes ≈30 s here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.flower.deployment import LocalFederation, _alive
from tests.adapters.flower.flower_contract import ROUND_CONFIG, check_one_signed_round


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[LocalFederation]:
    fed = LocalFederation(tmp_path, supernodes=2)
    try:
        fed.start()
        yield fed
    finally:
        started = [p.pid for p in fed.processes]
        fed.close()
        assert not any(_alive(pid) for pid in started)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_serverapp_completes_a_signed_round_on_a_real_superlink(federation):
    try:
        result = federation.run_app(ROUND_CONFIG, timeout_s=55)
    except Exception:
        print(federation.logs())
        raise
    check_one_signed_round(result)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_deployment_engine_trains_a_sub_models_reader_adapter(federation):
    from owm_adapters.knowledge import demo_data

    documents = Path(demo_data.__file__).parent / "owm-geo.json"
    config = {**ROUND_CONFIG, "model": "minilm-lora", "sub-model": "owm-geo",
              "documents-path": str(documents), "lr": 0.005}
    try:
        result = federation.run_app(config, timeout_s=240)
    except Exception:
        print(federation.logs())
        raise
    (round_1,) = result["rounds"]
    assert (round_1["participants"], round_1["accepted"], round_1["rejected"]) == (2, 2, [])
    assert round_1["signals"] == 0
    assert set(result["accuracies"]) == {"0", "1"}
