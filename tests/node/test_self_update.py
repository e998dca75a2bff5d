"""Self-update: only signed, OTS-verified release packages are staged, and nothing is executed
(SRS 4.1), end to end on the devnet chain + calendar."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.node.self_update import (
    UPDATES_DIR,
    stage_update,
    staged_release_dir,
    verify_release_package,
)
from owm_adapters.provenance.ots import OpenTimestamps
from owm_adapters.provenance.ots_calendar import Calendar
from owm_cli import node
from owm_core.identity.keys import Identity
from owm_core.provenance.packages import (
    ReleaseManifest,
    ReleaseRefusal,
    ReleaseSignature,
    sign_release,
    signatures_to_json,
)
from owm_core.provenance.versions import Network

URL = "http://127.0.0.1:1/calendar"
MAINTAINER = Identity.from_seed(b"\x11" * 32)
STRANGER = Identity.from_seed(b"\x22" * 32)
TRUSTED = [MAINTAINER.public_key_hex]


class Devnet:
    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.chain_path = base / "chain.db"
        self.chain = LocalChain(self.chain_path)
        self.calendar = Calendar(base / "calendar.db", self.chain, url=URL, randomness=os.urandom)
        self.ots = OpenTimestamps(self.chain, Network.REGTEST, [self.calendar])

    def stamp(self, digest: bytes, anchored: bool = True) -> bytes:
        proof = self.ots.stamp(digest)
        if not anchored:
            return proof
        self.calendar.flush()
        return self.ots.upgrade(proof)


@attrs.frozen
class Release:
    archive: Path
    manifest: Path
    proof: Path


def build_release(devnet: Devnet, folder: Path, version: str = "0.2.0",
                  signers: tuple[Identity, ...] = (MAINTAINER,), anchored: bool = True,
                  content: bytes = b"PK\x03\x04 pretend wheel of owm") -> Release:
    """What a maintainer publishes: archive, M.json, M.json.sig and M.json.ots (devnet)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"owm-{version}-py3-none-any.whl"
    archive.write_bytes(content)
    manifest = ReleaseManifest(version=version, archive_sha256=hashlib.sha256(content).hexdigest(),
                               created_at=1_800_000_000)
    manifest_path = folder / "owm-release.json"
    manifest_path.write_bytes(manifest.canonical())
    sigs = [ReleaseSignature(s.public_key_hex, sign_release(s, manifest)) for s in signers]
    (folder / "owm-release.json.sig").write_bytes(signatures_to_json(sigs))
    proof_path = folder / "owm-release.json.ots"
    proof_path.write_bytes(devnet.stamp(manifest.digest, anchored))
    return Release(archive, manifest_path, proof_path)


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path / "chain")


def staged(data_dir: Path) -> list[str]:
    updates = data_dir / UPDATES_DIR
    return sorted(p.name for p in updates.iterdir()) if updates.exists() else []


def stage(release: Release, devnet: Devnet, data_dir: Path, trusted=TRUSTED):
    return stage_update(release.archive, release.manifest, release.proof, trusted, devnet.ots,
                        data_dir)


def test_a_signed_anchored_release_is_verified_and_staged_without_being_run(devnet, tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,))
    data_dir = tmp_path / "node"
    outcome = stage(release, devnet, data_dir)
    assert outcome.staged and outcome.verdict.ok, outcome.verdict.message
    target = staged_release_dir(data_dir, "0.2.0")
    assert outcome.path == target and staged(data_dir) == ["owm-0.2.0"]
    assert (target / release.archive.name).read_bytes() == release.archive.read_bytes()
    record = json.loads((target / "verified.json").read_text())
    assert record["signers"] == TRUSTED and record["ots"]["height"] == 1
    assert (target / "manifest.json.ots").read_bytes() == release.proof.read_bytes()


def test_a_tampered_archive_is_refused_and_nothing_is_staged(devnet, tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,))
    release.archive.write_bytes(release.archive.read_bytes() + b"backdoor")
    data_dir = tmp_path / "node"
    outcome = stage(release, devnet, data_dir)
    assert not outcome.staged and outcome.verdict.refusal is ReleaseRefusal.DIGEST_MISMATCH
    assert staged(data_dir) == []


def test_a_release_signed_by_an_untrusted_key_is_refused_and_nothing_is_staged(devnet, tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(STRANGER,))
    data_dir = tmp_path / "node"
    outcome = stage(release, devnet, data_dir)
    assert outcome.verdict.refusal is ReleaseRefusal.UNTRUSTED_SIGNER
    assert staged(data_dir) == []


def test_a_release_whose_proof_is_still_pending_is_refused_and_nothing_is_staged(devnet,
                                                                                  tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,), anchored=False)
    data_dir = tmp_path / "node"
    outcome = stage(release, devnet, data_dir)
    assert outcome.verdict.refusal is ReleaseRefusal.PROOF_PENDING
    assert staged(data_dir) == []


def test_a_refused_update_leaves_the_previously_staged_version_untouched(devnet, tmp_path):
    data_dir = tmp_path / "node"
    good = build_release(devnet, tmp_path / "good", signers=(MAINTAINER,))
    assert stage(good, devnet, data_dir).staged
    bad = build_release(devnet, tmp_path / "bad", signers=(MAINTAINER,), content=b"evil")
    bad.archive.write_bytes(b"eviler")
    assert not stage(bad, devnet, data_dir).staged
    target = staged_release_dir(data_dir, "0.2.0")
    assert (target / good.archive.name).read_bytes() == good.archive.read_bytes()
    assert staged(data_dir) == ["owm-0.2.0"]


def test_an_unsigned_release_is_refused_with_the_number_of_signatures_missing(devnet, tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,))
    (tmp_path / "pub" / "owm-release.json.sig").unlink()
    verdict = verify_release_package(release.archive, release.manifest, release.proof, TRUSTED,
                                     devnet.ots)
    assert verdict.refusal is ReleaseRefusal.NOT_ENOUGH_SIGNERS and "0 of the 1" in verdict.detail


def _config(tmp_path: Path, keys: list[str]) -> Path:
    config = tmp_path / "owm.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path / "node"}"\n'
                      f"release_keys = {json.dumps(keys)}\n")
    return config


def _cli(release: Release, devnet: Devnet, config: Path, *extra: str):
    return CliRunner().invoke(node.cli, [
        "verify-release", str(release.archive), "--manifest", str(release.manifest),
        "--ots", str(release.proof), "--local-chain", str(devnet.chain_path),
        "--config", str(config), *extra,
    ])


def test_owm_node_verify_release_stages_a_verified_package_and_exits_zero(devnet, tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,))
    result = _cli(release, devnet, _config(tmp_path, TRUSTED), "--stage")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verified owm 0.2.0")
    assert staged(tmp_path / "node") == ["owm-0.2.0"]


def test_owm_node_verify_release_prints_the_reason_and_exits_three_when_refused(devnet,
                                                                                tmp_path):
    release = build_release(devnet, tmp_path / "pub", signers=(MAINTAINER,))
    result = _cli(release, devnet, _config(tmp_path, [STRANGER.public_key_hex]), "--stage")
    assert result.exit_code == 3
    assert result.output.startswith("refused: untrusted_signer: ")
    assert "nothing staged" in result.output
    assert staged(tmp_path / "node") == []


def test_a_release_made_with_owm_release_manifest_and_sign_is_accepted_by_the_node(devnet,
                                                                                    tmp_path):
    from owm_cli.release import release

    key = tmp_path / "maintainer.key"
    key.write_text(("11" * 32) + "\n")
    key.chmod(0o600)
    archive = tmp_path / "owm-0.3.0.tar.gz"
    archive.write_bytes(b"\x1f\x8b pretend sdist")
    manifest_path = tmp_path / "owm-0.3.0.release.json"
    runner = CliRunner()
    made = runner.invoke(release, ["manifest", str(archive), "--version", "0.3.0",
                                   "-o", str(manifest_path)])
    assert made.exit_code == 0, made.output
    for _ in range(2):  # signing twice with one key keeps one signature
        signed = runner.invoke(release, ["sign", str(manifest_path), "--key", str(key)])
        assert signed.exit_code == 0, signed.output
    assert json.loads((tmp_path / "owm-0.3.0.release.json.sig").read_text())[0]["signer"] == (
        MAINTAINER.public_key_hex)
    proof = tmp_path / "owm-0.3.0.release.json.ots"
    proof.write_bytes(devnet.stamp(hashlib.sha256(manifest_path.read_bytes()).digest()))
    result = _cli(Release(archive, manifest_path, proof), devnet, _config(tmp_path, TRUSTED))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("verified owm 0.3.0: signed by 1 trusted key(s)")
    assert staged(tmp_path / "node") == []
