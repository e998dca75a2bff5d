"""Model weights on the node: loaded only after their OpenTimestamps proof verifies (SRS-NODE-10),
and moved over clearnet only (SRS-NET-04).

* :class:`CachedModelRuntime` — the :class:`~owm_core.ports.model_runtime.ModelRuntime` of the
  FL architectures (:mod:`owm_adapters.models.architectures`; a version's tensor names say
  which, and every tensor must have the architecture's shape): the installed version of each
  sub-model lives in the model cache (``OWM_MODEL_CACHE_DIR``, default ``~/.owm/models``) as
  ``<sub_model>/current.npz``, replaced atomically, which the isolated task workers read
  (:mod:`.task_exec`); every verified version is also kept as ``<sub_model>/<version>.npz``, so
  a task pinned to an older version runs exactly that one (SRS-SEC-11); the daemon's watcher
  prunes the ones no task needs (:mod:`.pruning`).
* :func:`install_verified` — the only way weights reach the runtime: the proof is checked
  through the :class:`~owm_core.ports.timestamping.Timestamping` port with
  :func:`owm_core.provenance.verification.verify_model_version`, which recomputes the digest from
  the
  weights themselves; a failed or pending proof leaves the previous weights in place.
* :func:`install_weights_file` — decodes an ``.npz`` / torch file and calls
  :func:`install_verified`: the one path ``owm-node install-weights`` and the daemon's
  :mod:`.weights_watcher` share.
* :func:`download` / :func:`ensure_clearnet` — weight downloads and FL uploads refuse to be
  routed through a SOCKS5 proxy or to an ``.onion`` host, with a message that says why;
  downloads also ignore the ``*_PROXY`` environment variables.
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import numpy as np

from owm_adapters.models.architectures import architecture_of, from_named, named
from owm_adapters.models.tinynet import GENESIS, infer
from owm_adapters.node.task_exec import load_weights
from owm_core.errors import CalendarUnavailable, ChainUnavailable, DomainError
from owm_core.ports.model_runtime import ModelRuntime
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.verification import verify_model_version
from owm_core.provenance.versions import FailureReason, ModelVersion, Verification

MODEL_CACHE_ENV = "OWM_MODEL_CACHE_DIR"
MAX_DOWNLOAD_BYTES = 2 * 1024**3


class ClearnetOnly(DomainError):
    """FL uploads and model weight downloads must not go through a proxy (SRS-NET-04)."""

    code = "clearnet-only"


def model_cache_dir(configured: str = "", data_dir: str = "~/.owm") -> Path:
    """``$OWM_MODEL_CACHE_DIR``, else the configured path, else ``<data_dir>/models``."""
    chosen = os.environ.get(MODEL_CACHE_ENV) or configured or str(Path(data_dir) / "models")
    return Path(chosen).expanduser()


def ensure_clearnet(purpose: str, url: str, proxy: str | None) -> None:
    """Refuse to move ``purpose`` (weights, FL updates) through ``proxy`` or to an onion host."""
    if proxy:
        raise ClearnetOnly(
            f"{purpose} use clearnet only (SRS-NET-04); refusing to route {url} through the "
            f"SOCKS5 proxy {proxy}. The proxy carries control-plane traffic only."
        )
    host = urlsplit(url).hostname or ""
    if host.endswith(".onion"):
        raise ClearnetOnly(
            f"{purpose} use clearnet only (SRS-NET-04); {host} is a Tor onion address"
        )


def download(
    url: str, *, proxy: str | None = None, timeout_s: float = 60.0,
    max_bytes: int = MAX_DOWNLOAD_BYTES,
) -> bytes:
    """Fetch model weights over clearnet (http/https); ClearnetOnly when asked to use a proxy."""
    ensure_clearnet("model weight downloads", url, proxy)
    if urlsplit(url).scheme not in {"http", "https"}:
        raise ClearnetOnly(f"weights are downloaded over http(s), not {url}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout_s) as response:
        data: bytes = response.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ClearnetOnly(f"{url} is larger than {max_bytes} bytes")
    return data


@attrs.frozen
class InstallOutcome:
    """Whether a version was installed, and the proof's verdict either way."""

    installed: bool
    version_id: str
    verification: Verification | None
    reason: str = ""
    retry: bool = False
    """Worth trying again later: the proof is only pending, or the chain was unreachable."""


class CachedModelRuntime:
    """:class:`ModelRuntime` over the model cache directory (module docstring)."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir

    def load(self, sub_model: str, version: str, weights: Mapping[str, Any]) -> None:
        """Make ``version`` the one that answers, atomically (readers never see half a file),
        and keep it for the tasks pinned to it (:meth:`keep`)."""
        self.keep(sub_model, version, weights)
        self._write(sub_model, "current", version, weights)

    def keep(self, sub_model: str, version: str, weights: Mapping[str, Any]) -> None:
        """Keep ``version`` as ``<sub_model>/<version>.npz`` for tasks pinned to it, without
        making it the one that answers unpinned tasks."""
        self._write(sub_model, version, version, weights)

    def has_version(self, sub_model: str, version: str) -> bool:
        """Whether a task pinned to ``version`` can run here now (``genesis`` always can)."""
        if version == GENESIS:
            return True
        try:
            found, _ = load_weights(str(self.model_dir), sub_model, pinned=version)
        except ValueError:
            return False
        return found == version

    def _write(self, sub_model: str, file: str, version: str, weights: Mapping[str, Any]) -> None:
        arch = architecture_of(weights)
        arrays: dict[str, Any] = {"__version__": np.array(version),
                                  **named(arch, from_named(arch, weights))}
        folder = self.model_dir / sub_model
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, folder / f"{file}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def loaded_version(self, sub_model: str) -> str | None:
        """The installed version, or None (tasks then use the genesis weights)."""
        version, _ = load_weights(str(self.model_dir), sub_model)
        return None if version == GENESIS else version

    def infer(self, sub_model: str, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Logits for ``inputs["features"]`` with the installed (or genesis) weights."""
        version, weights = load_weights(str(self.model_dir), sub_model)
        logits = infer(weights, np.array(inputs["features"], dtype=np.float64))
        return {"model_version": version, "logits": logits.tolist()}


def install_verified(
    runtime: ModelRuntime,
    timestamping: Timestamping,
    version: ModelVersion,
    weights: Mapping[str, Any],
    proof: bytes,
    extra_metadata: Mapping[str, Any] | None = None,
    *,
    make_current: bool = True,
) -> InstallOutcome:
    """Load ``weights`` as ``version`` only if ``proof`` anchors their digest (SRS-NODE-10).

    The digest is recomputed from the weights, so tampered weights fail even with a genuine
    proof. Any failure — proof pending, wrong block, digest mismatch, incompatible shapes —
    returns ``installed=False`` and leaves the previously loaded version answering. With
    ``make_current=False`` the version is only kept for the tasks pinned to it.
    """
    try:
        verification = verify_model_version(version, proof, timestamping, weights, extra_metadata)
    except (ChainUnavailable, CalendarUnavailable) as exc:
        return InstallOutcome(False, version.id, None, exc.message, retry=True)
    except DomainError as exc:
        return InstallOutcome(False, version.id, None, exc.message)
    if not verification.ok:
        pending = verification.failure is FailureReason.PENDING_ONLY
        return InstallOutcome(False, version.id, verification, verification.detail, retry=pending)
    try:
        if make_current:
            runtime.load(version.sub_model, version.version, weights)
        else:
            runtime.keep(version.sub_model, version.version, weights)
    except ValueError as exc:
        return InstallOutcome(False, version.id, verification, str(exc))
    record = runtime_record(version, verification)
    if isinstance(runtime, CachedModelRuntime):
        folder = runtime.model_dir / version.sub_model
        (folder / f"{version.version}.ots").write_bytes(proof)
        (folder / f"{version.version}.json").write_text(json.dumps(record, indent=2))
    return InstallOutcome(True, version.id, verification)


def decode_weights(raw: bytes, name: str) -> dict[str, Any]:
    """The tensors of a weights file: ``.npz`` (by ``name``; ``__dunder__`` entries such as the
    cache's ``__version__`` are metadata, not weights) or a ``torch.save`` state dict.

    Raises ValueError for a file that is neither.
    """
    import io

    import torch

    if raw[:2] == b"PK" and name.endswith(".npz"):
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                return {k: torch.from_numpy(np.array(data[k])) for k in data.files
                        if not (k.startswith("__") and k.endswith("__"))}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{name} is not a readable .npz file: {exc}") from None
    try:
        loaded = torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as exc:  # torch raises many kinds for a file that is not its own
        raise ValueError(f"{name} is neither an .npz nor a torch state dict: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{name} does not hold a state dict")
    return dict(loaded)


def install_weights_file(
    runtime: ModelRuntime,
    timestamping: Timestamping,
    version: ModelVersion,
    raw: bytes,
    name: str,
    proof: bytes,
    *,
    make_current: bool = True,
) -> InstallOutcome:
    """Decode a downloaded or local weights file and :func:`install_verified` it: the one path
    ``owm-node install-weights`` and the daemon's weights watcher share (SRS-NODE-10)."""
    try:
        tensors = decode_weights(raw, name)
    except ValueError as exc:
        return InstallOutcome(False, version.id, None, str(exc))
    return install_verified(runtime, timestamping, version, tensors, proof,
                            make_current=make_current)


def runtime_record(version: ModelVersion, verification: Verification) -> dict[str, Any]:
    """What the cache records next to an installed version (for operators and audits)."""
    return {
        "id": version.id,
        "digest": version.digest,
        "parent": version.parent,
        "created_at": version.created_at,
        "ots": {"height": verification.height, "block_hash": verification.block_hash,
                "block_time": verification.block_time},
    }
