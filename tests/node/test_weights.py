"""Weights load only after their OpenTimestamps proof verifies (SRS-NODE-10); weight transfers
use clearnet only (SRS-NET-04)."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.models.tinynet import genesis_weights
from owm_adapters.node.weights import (
    CachedModelRuntime,
    ClearnetOnly,
    download,
    ensure_clearnet,
    install_verified,
    model_cache_dir,
)
from owm_adapters.provenance.ots import OpenTimestamps
from owm_adapters.provenance.ots_calendar import Calendar
from owm_core.provenance.versions import FailureReason, Network, new_model_version

URL = "http://127.0.0.1:1/calendar"


class Devnet:
    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.chain = LocalChain(base / "chain.db")
        self.calendar = Calendar(base / "calendar.db", self.chain, url=URL, randomness=os.urandom)
        self.ots = OpenTimestamps(self.chain, Network.REGTEST, [self.calendar])

    def anchored(self, digest: bytes) -> bytes:
        proof = self.ots.stamp(digest)
        self.calendar.flush()
        return self.ots.upgrade(proof)


def tensors(scale: float, sub_model: str = "owm-geo") -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v * scale) for k, v in genesis_weights(sub_model).items()}


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path / "chain")


@pytest.fixture
def runtime(tmp_path: Path) -> CachedModelRuntime:
    return CachedModelRuntime(tmp_path / "models")


def release(devnet: Devnet, version: str, weights, anchored: bool = True):
    model = new_model_version(version, "owm-geo", weights, created_at=1_800_000_000)
    proof = devnet.anchored(model.digest_bytes) if anchored else devnet.ots.stamp(
        model.digest_bytes)
    return model, proof


def test_weights_with_an_anchored_proof_are_installed_and_answer(devnet, runtime):
    weights = tensors(2.0)
    model, proof = release(devnet, "owm-v0.1.0", weights)
    outcome = install_verified(runtime, devnet.ots, model, weights, proof)
    assert outcome.installed and outcome.verification is not None
    assert outcome.verification.height == 1
    assert runtime.loaded_version("owm-geo") == "owm-v0.1.0"
    assert (runtime.model_dir / "owm-geo" / "owm-v0.1.0.ots").read_bytes() == proof


def test_tampered_weights_are_refused_and_the_previous_version_keeps_answering(devnet, runtime):
    good = tensors(2.0)
    model, proof = release(devnet, "owm-v0.1.0", good)
    assert install_verified(runtime, devnet.ots, model, good, proof).installed
    before = runtime.infer("owm-geo", {"features": [[0.3] * 32]})
    newer, newer_proof = release(devnet, "owm-v0.2.0", tensors(3.0))
    tampered = {**tensors(3.0), "body.2.bias": torch.ones(10)}
    outcome = install_verified(runtime, devnet.ots, newer, tampered, newer_proof)
    assert not outcome.installed
    assert outcome.verification.failure is FailureReason.DIGEST_MISMATCH
    assert runtime.loaded_version("owm-geo") == "owm-v0.1.0"
    assert runtime.infer("owm-geo", {"features": [[0.3] * 32]}) == before


def test_a_proof_still_pending_at_the_calendar_does_not_load_the_weights(devnet, runtime):
    weights = tensors(5.0)
    model, proof = release(devnet, "owm-v0.1.0", weights, anchored=False)
    outcome = install_verified(runtime, devnet.ots, model, weights, proof)
    assert not outcome.installed and outcome.verification.failure is FailureReason.PENDING_ONLY
    assert runtime.loaded_version("owm-geo") is None


def test_a_proof_for_other_weights_is_refused(devnet, runtime):
    weights = tensors(2.0)
    model, _ = release(devnet, "owm-v0.1.0", weights)
    _, other_proof = release(devnet, "owm-v0.9.0", tensors(7.0))
    outcome = install_verified(runtime, devnet.ots, model, weights, other_proof)
    assert not outcome.installed
    assert runtime.loaded_version("owm-geo") is None


def test_verified_weights_of_the_wrong_shape_are_not_loaded(devnet, runtime):
    weights = {"layer.weight": torch.ones(2, 2)}
    model = new_model_version("owm-v0.1.0", "owm-geo", weights, created_at=1_800_000_000)
    outcome = install_verified(runtime, devnet.ots, model, weights,
                               devnet.anchored(model.digest_bytes))
    assert not outcome.installed and "body.0.weight" in outcome.reason


def test_weight_downloads_and_fl_uploads_refuse_a_socks5_proxy_with_a_clear_reason():
    with pytest.raises(ClearnetOnly, match=r"clearnet only.*SOCKS5 proxy 127\.0\.0\.1:9050"):
        download("http://127.0.0.1:1/w.npz", proxy="127.0.0.1:9050")
    with pytest.raises(ClearnetOnly, match="FL uploads"):
        ensure_clearnet("FL uploads", "https://coordinator.example/fl", "127.0.0.1:9050")
    with pytest.raises(ClearnetOnly, match="onion"):
        ensure_clearnet("model weight downloads", "http://abcdef.onion/w", None)
    ensure_clearnet("FL uploads", "https://coordinator.example/fl", None)


def test_a_clearnet_download_ignores_proxy_environment_variables(tmp_path, monkeypatch):
    (tmp_path / "w.bin").write_bytes(b"weights")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1")
    try:
        assert download(f"http://127.0.0.1:{server.server_address[1]}/w.bin") == b"weights"
    finally:
        server.shutdown()
        server.server_close()


def test_the_model_cache_follows_the_environment_then_the_config(monkeypatch, tmp_path):
    monkeypatch.delenv("OWM_MODEL_CACHE_DIR", raising=False)
    assert model_cache_dir("", str(tmp_path)) == tmp_path / "models"
    assert model_cache_dir(str(tmp_path / "c"), str(tmp_path)) == tmp_path / "c"
    monkeypatch.setenv("OWM_MODEL_CACHE_DIR", str(tmp_path / "env"))
    assert model_cache_dir(str(tmp_path / "c"), str(tmp_path)) == tmp_path / "env"


def test_install_weights_refuses_a_pending_proof_then_installs_the_anchored_one(devnet, tmp_path):
    import json

    import numpy as np
    from click.testing import CliRunner

    from owm_cli import node

    weights = tensors(2.0)
    model = new_model_version("owm-v0.3.0", "owm-geo", weights, created_at=1_800_000_000)
    (tmp_path / "version.json").write_text(json.dumps(
        {"version": model.version, "sub_model": model.sub_model, "digest": model.digest,
         "created_at": model.created_at, "parent": model.parent}))
    np.savez(tmp_path / "w.npz", **{k: v.numpy() for k, v in weights.items()})
    pending = devnet.ots.stamp(model.digest_bytes)
    (tmp_path / "pending.ots").write_bytes(pending)
    devnet.calendar.flush()
    (tmp_path / "anchored.ots").write_bytes(devnet.ots.upgrade(pending))
    config = tmp_path / "owm.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path / "state"}"\n')
    args = [str(tmp_path / "version.json"), str(tmp_path / "w.npz")]
    chain = ["--config", str(config), "--local-chain", str(tmp_path / "chain" / "chain.db")]
    refused = CliRunner().invoke(node.cli, ["install-weights", *args,
                                            str(tmp_path / "pending.ots"), *chain])
    assert refused.exit_code == 3, refused.output
    assert "not installed" in refused.output and "genesis keeps answering" in refused.output
    done = CliRunner().invoke(node.cli, ["install-weights", *args,
                                         str(tmp_path / "anchored.ots"), *chain])
    assert done.exit_code == 0, done.output
    assert "installed  owm-geo@owm-v0.3.0  (Bitcoin block 1)" in done.output
    runtime = CachedModelRuntime(tmp_path / "state" / "models")
    assert runtime.loaded_version("owm-geo") == "owm-v0.3.0"
