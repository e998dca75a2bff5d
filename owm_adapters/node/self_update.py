"""Self-update of the node: signed, OpenTimestamps-verified release packages (SRS 4.1).

The node never runs code it downloaded on its own. A release is three files published next to
the package archive (a wheel or tarball): the manifest ``M.json`` (the canonical
:class:`~owm_core.provenance.packages.ReleaseManifest`), its maintainers' signatures
``M.json.sig`` and the OpenTimestamps proof ``M.json.ots`` of the manifest digest.

* :func:`verify_release_package` hashes the archive, reads the three files and returns the
  :class:`~owm_core.provenance.packages.ReleaseVerdict` of
  :func:`owm_core.provenance.packages.verify_release`, with the proof checked through the
  :class:`~owm_core.ports.timestamping.Timestamping` port (block headers from bitcoind or a
  devnet chain).
* :func:`stage_update` copies a verified package into ``<data_dir>/updates/owm-<version>/``
  (archive, manifest, signatures, proof and a ``verified.json`` record) and nothing else: it
  never executes or installs anything; the operator or a service manager applies the staged
  archive. The archive is judged by the hash of the very bytes that were copied (no window
  between checking and copying), in a temporary folder renamed into place only after the
  verdict is positive; any refusal or error leaves nothing staged and an earlier staged
  version untouched — the same rule as :func:`.weights.install_verified` for model weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import attrs

from owm_core.errors import InvalidValue
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.packages import (
    ReleaseManifest,
    ReleaseSignature,
    ReleaseVerdict,
    signatures_from_json,
    verify_release,
)

UPDATES_DIR = "updates"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_PROOF_BYTES = 1_000_000
_CHUNK = 1 << 20
_RECORD_FILES = frozenset({"manifest.json", "manifest.json.sig", "manifest.json.ots",
                           "verified.json"})


def signatures_path_for(manifest_path: Path) -> Path:
    """Where the signatures of ``M.json`` are published by default: ``M.json.sig``."""
    return manifest_path.with_name(manifest_path.name + ".sig")


@attrs.frozen
class _ReleaseFiles:
    manifest: ReleaseManifest
    manifest_bytes: bytes
    signatures: tuple[ReleaseSignature, ...]
    signature_bytes: bytes
    proof: bytes


def _read_limited(path: Path, limit: int, what: str) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise InvalidValue(what, f"{path} is larger than {limit} bytes")
    return data


def _read_release(manifest_path: Path, proof_path: Path, signatures_path: Path | None
                  ) -> _ReleaseFiles:
    manifest_bytes = _read_limited(manifest_path, MAX_MANIFEST_BYTES, "manifest")
    sig_path = signatures_path or signatures_path_for(manifest_path)
    try:
        signature_bytes = _read_limited(sig_path, MAX_MANIFEST_BYTES, "signatures file")
    except FileNotFoundError:
        if signatures_path is not None:
            raise
        signature_bytes = b"[]"  # unsigned: the verdict says how many signatures are missing
    return _ReleaseFiles(
        manifest=ReleaseManifest.from_json(manifest_bytes),
        manifest_bytes=manifest_bytes,
        signatures=signatures_from_json(signature_bytes),
        signature_bytes=signature_bytes,
        proof=_read_limited(proof_path, MAX_PROOF_BYTES, "proof"),
    )


def _copy_hashing(source: BinaryIO, target: BinaryIO | None) -> str:
    digest = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
    return digest.hexdigest()


def _judge(archive_sha256: str, files: _ReleaseFiles, trusted_keys: Iterable[str],
           timestamping: Timestamping, threshold: int) -> ReleaseVerdict:
    verification = timestamping.verify(files.proof, files.manifest.digest)
    return verify_release(archive_sha256, files.manifest, files.signatures, trusted_keys,
                          verification, threshold)


def verify_release_package(
    archive_path: Path,
    manifest_path: Path,
    proof_path: Path,
    trusted_keys: Iterable[str],
    timestamping: Timestamping,
    *,
    signatures_path: Path | None = None,
    threshold: int = 1,
) -> ReleaseVerdict:
    """Whether the archive is a release signed by ``threshold`` trusted keys and anchored in
    Bitcoin (SRS 4.1). ``signatures_path`` defaults to ``<manifest>.sig``; a missing default
    file means "unsigned" (refused with the count). A malformed manifest or signatures file
    raises :class:`~owm_core.errors.InvalidValue`; an unreachable chain ``ChainUnavailable``.
    """
    files = _read_release(manifest_path, proof_path, signatures_path)
    with archive_path.open("rb") as archive:
        archive_sha256 = _copy_hashing(archive, None)
    return _judge(archive_sha256, files, trusted_keys, timestamping, threshold)


@attrs.frozen
class StageOutcome:
    """Whether a package was staged, where, and the verdict either way."""

    staged: bool
    verdict: ReleaseVerdict
    path: Path | None = None


def staged_release_dir(data_dir: Path, version: str) -> Path:
    """Where a verified release of ``version`` is staged: ``<data_dir>/updates/owm-<version>``."""
    return data_dir / UPDATES_DIR / f"owm-{version}"


def stage_update(
    archive_path: Path,
    manifest_path: Path,
    proof_path: Path,
    trusted_keys: Iterable[str],
    timestamping: Timestamping,
    data_dir: Path,
    *,
    signatures_path: Path | None = None,
    threshold: int = 1,
) -> StageOutcome:
    """Copy a verified release package into ``<data_dir>/updates/owm-<version>/`` (SRS 4.1).

    Nothing is executed or installed. A refused package (or any error) leaves nothing staged;
    re-staging the same version replaces the earlier copy only once the new one is verified.
    """
    files = _read_release(manifest_path, proof_path, signatures_path)
    updates = data_dir / UPDATES_DIR
    updates.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = Path(tempfile.mkdtemp(prefix=".staging-", dir=updates))
    try:
        archive_name = archive_path.name
        if archive_name in _RECORD_FILES:
            archive_name = "package-" + archive_name
        with archive_path.open("rb") as source, (scratch / archive_name).open("wb") as copy:
            archive_sha256 = _copy_hashing(source, copy)
        verdict = _judge(archive_sha256, files, trusted_keys, timestamping, threshold)
        if not verdict.ok:
            return StageOutcome(False, verdict)
        (scratch / "manifest.json").write_bytes(files.manifest_bytes)
        (scratch / "manifest.json.sig").write_bytes(files.signature_bytes)
        (scratch / "manifest.json.ots").write_bytes(files.proof)
        (scratch / "verified.json").write_text(
            json.dumps(_record(verdict, archive_name), indent=2) + "\n", encoding="utf-8")
        target = staged_release_dir(data_dir, files.manifest.version)
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=".retired-", dir=updates))
            os.replace(target, retired / "old")
            shutil.rmtree(retired)
        os.replace(scratch, target)
        return StageOutcome(True, verdict, target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch)


def _record(verdict: ReleaseVerdict, archive_name: str) -> dict[str, object]:
    """What ``verified.json`` records next to a staged package (for operators and audits)."""
    verification = verdict.verification
    assert verification is not None
    return {
        "name": verdict.manifest.name,
        "version": verdict.manifest.version,
        "archive": archive_name,
        "archive_sha256": verdict.manifest.archive_sha256,
        "manifest_digest": verdict.manifest.digest.hex(),
        "signers": list(verdict.signers),
        "ots": {"height": verification.height, "block_hash": verification.block_hash,
                "block_time": verification.block_time},
        "staged_at": int(time.time()),
    }
