"""New model versions reach the node: poll the coordinator's API, install verified weights.

:class:`WeightsWatcher` runs in the daemon (thread ``owm-weights``) when ``[coordinator]
api_url`` is set. Every ``weights_poll_s`` it asks ``GET /v1/model/versions`` (newest first),
picks the newest version of each sub-model that is newer than the one installed, downloads
``GET /v1/model/versions/{id}/weights`` (the ``.npz`` of the version's tensors) and
``GET /v1/model/versions/{id}/ots`` (its OpenTimestamps proof) and hands them to
:func:`~owm_adapters.node.weights.install_weights_file` — the same path as
``owm-node install-weights`` — so weights load only when the proof verifies through the
timestamping port against the node's own ``[chain]`` (SRS-NODE-10). What happens otherwise:

* proof still pending at its calendar (or not stamped yet) → nothing installed; with
  ``pending_versions = "wait"`` (the default) tried again at the next poll (the coordinator
  upgrades its proofs), with ``"skip"`` given up for good (a newer version is awaited);
* proof failed, digest mismatch, unreadable or misshapen weights → refused, the previous
  version keeps answering, and this version is not downloaded again;
* a version without weights (404: e.g. retrieval-only sub-models) → remembered and skipped.

After a poll installs a version, older kept versions of that sub-model are pruned
(:mod:`.pruning`): the installed one, every version a queued or running task is pinned to
(``in_use``) and the ``keep_versions`` newest others stay; a pruned version pinned later is
downloaded and verified again by :meth:`WeightsWatcher.ensure_version`.

Requests are signed with the node's identity (``X-OWM-Node-Key`` …, the API's node
authentication) and go over clearnet only: never through the control plane's SOCKS5 proxy or
``*_PROXY`` variables, never to an ``.onion`` host, never following redirects (SRS-NET-04).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import quote, urlsplit

import attrs

from owm_adapters.net.destinations import check_node_target, clearnet_opener
from owm_adapters.node.context import note, poll_errors_logged
from owm_adapters.node.fl_upload import STRICT
from owm_adapters.node.pruning import prune_versions
from owm_adapters.node.weights import (
    MAX_DOWNLOAD_BYTES,
    CachedModelRuntime,
    ClearnetOnly,
    InstallOutcome,
    ensure_clearnet,
    install_weights_file,
)
from owm_core.access.callers import signed_request_message
from owm_core.access.destinations import DestinationPolicy
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity
from owm_core.ports.clock import Clock
from owm_core.ports.timestamping import Timestamping
from owm_core.provenance.versions import FailureReason, ModelVersion

log = logging.getLogger(__name__)

PURPOSE = "model weight downloads"
MAX_PROOF_BYTES = 1_000_000
MAX_LISTING_BYTES = 16 * 1024 * 1024


class WeightsUnavailable(DomainError):
    """The coordinator's API could not be asked or answered with something unusable."""

    code = "weights-unavailable"


@attrs.frozen
class PollResult:
    """What one poll did: versions installed, refused for good, and left for a later poll."""

    installed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()


def _without_trailing_slash(url: str) -> str:
    return url.rstrip("/")


@attrs.define(eq=False)
class WeightsWatcher:
    """Polls the coordinator's API for model versions and installs verified ones (module doc)."""

    api_url: str = attrs.field(converter=_without_trailing_slash)
    identity: Identity
    runtime: CachedModelRuntime
    timestamping: Timestamping
    clock: Clock
    coordinator_key: str = attrs.field(kw_only=True)
    """The coordinator's public key (``[coordinator] public_key``) its requests are signed for."""
    proxy: str | None = attrs.field(default=None, kw_only=True)
    say: Callable[[str], None] = attrs.field(default=print, kw_only=True)
    timeout_s: float = attrs.field(default=60.0, kw_only=True)
    _entropy: Callable[[int], bytes] = attrs.field(default=os.urandom, kw_only=True)
    policy: DestinationPolicy = attrs.field(default=STRICT, kw_only=True)
    """Which non-public targets downloads may reach (SRS-SEC-06; devnets: loopback)."""
    pending_versions: str = attrs.field(default="wait", kw_only=True)
    """``wait`` or ``skip``: what a version whose proof is still pending gets."""
    keep_versions: int = attrs.field(default=5, kw_only=True)
    """How many kept versions per sub-model besides the installed and the pinned ones."""
    in_use: Callable[[], Collection[str]] = attrs.field(default=lambda: (), init=False)
    """The versions queued or running tasks are pinned to (set by the daemon): never pruned."""
    _skip: dict[str, str] = attrs.field(factory=dict, init=False)
    """Version ids not to download again, with the reason (refused, or no weights)."""
    lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    """Held while installing or pruning; the feed holds it from checking a task's pinned
    version until the task is queued, so no pruning falls in between."""

    # -- HTTP ------------------------------------------------------------------------------

    def _get(self, path: str, max_bytes: int) -> bytes | None:
        """GET ``api_url + path`` signed by the node; None on 404; WeightsUnavailable else."""
        url = self.api_url + path
        ensure_clearnet(PURPOSE, url, self.proxy)
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"}:
            raise ClearnetOnly(f"{PURPOSE} go over http(s), not {url}")
        addresses = check_node_target(url, self.policy)
        if not addresses:
            raise WeightsUnavailable(f"GET {url}: {parts.hostname} does not resolve")
        path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        now = self.clock.now()
        nonce = self._entropy(16).hex()
        signature = self.identity.sign(
            signed_request_message(self.coordinator_key, "GET", path_and_query, now, nonce, b"")
        )
        request = urllib.request.Request(url, headers={  # noqa: S310 (http/https checked above)
            "X-OWM-Node-Key": self.identity.public_key_hex,
            "X-OWM-Timestamp": str(now),
            "X-OWM-Nonce": nonce,
            "X-OWM-Signature": signature.hex(),
        })
        try:
            with clearnet_opener(addresses[0]).open(request, timeout=self.timeout_s) as response:
                data: bytes = response.read(max_bytes + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise WeightsUnavailable(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise WeightsUnavailable(f"GET {url}: {getattr(exc, 'reason', exc)}") from None
        if len(data) > max_bytes:
            raise WeightsUnavailable(f"GET {url}: more than {max_bytes} bytes")
        return data

    def releases(self) -> list[dict[str, Any]]:
        """The coordinator's model versions (``GET /v1/model/versions``)."""
        raw = self._get("/v1/model/versions", MAX_LISTING_BYTES)
        try:
            listing = json.loads(raw or b"")
            versions = listing["versions"]
        except (ValueError, KeyError, TypeError):
            raise WeightsUnavailable("GET /v1/model/versions: not a version listing") from None
        if not isinstance(versions, list):
            raise WeightsUnavailable("GET /v1/model/versions: versions is not a list")
        return [v for v in versions if isinstance(v, dict)]

    # -- choosing and installing ---------------------------------------------------------------

    def candidates(self, releases: list[dict[str, Any]]) -> list[ModelVersion]:
        """The newest version of each sub-model, when newer than the installed one."""
        newest: dict[str, ModelVersion] = {}
        for release in releases:
            version = _model_version(release)
            if version is None:
                continue
            best = newest.get(version.sub_model)
            if best is None or version.created_at > best.created_at:
                newest[version.sub_model] = version
        chosen = []
        for sub_model, version in sorted(newest.items()):
            installed = self.runtime.loaded_version(sub_model)
            if installed == version.version or version.id in self._skip:
                continue
            if self.installed_at(sub_model) >= version.created_at:
                continue  # the node already runs something at least as new
            chosen.append(version)
        return chosen

    def installed_at(self, sub_model: str) -> int:
        """``created_at`` of the installed version (-1 when none: genesis weights answer)."""
        installed = self.runtime.loaded_version(sub_model)
        if installed is None:
            return -1
        record = self.runtime.model_dir / sub_model / f"{installed}.json"
        try:
            return int(json.loads(record.read_text(encoding="utf-8"))["created_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1

    def install(self, version: ModelVersion, current: bool = True) -> InstallOutcome | None:
        """Download one version and install it if its proof verifies; None when the API has
        no weights or no proof for it (yet). ``current=False`` only keeps it for pinned tasks."""
        quoted = quote(version.id, safe="@")
        proof = self._get(f"/v1/model/versions/{quoted}/ots", MAX_PROOF_BYTES)
        if proof is None:
            return None  # not stamped yet: next poll (the weights are not fetched until then)
        raw = self._get(f"/v1/model/versions/{quoted}/weights", MAX_DOWNLOAD_BYTES)
        if raw is None:
            self._skip[version.id] = "the API serves no weights for it"
            return None
        return install_weights_file(self.runtime, self.timestamping, version, raw,
                                    f"{version.id}.npz", proof, make_current=current)

    def ensure_version(self, sub_model: str, version: str) -> InstallOutcome:
        """Install exactly ``version`` of ``sub_model`` for a task pinned to it, through the
        same download and OpenTimestamps verification as every install (SRS-NODE-10, SRS-SEC-11).

        A version already held answers at once. One newer than the installed one also becomes
        the answering version; an older one is only kept for the tasks pinned to it. Failures
        (not listed, no proof or weights served, proof pending or failing) come back as an
        outcome with ``installed=False`` and the reason; nothing else is installed instead.
        """
        release_id = f"{sub_model}@{version}"
        with self.lock:
            if self.runtime.has_version(sub_model, version):
                return InstallOutcome(True, release_id, None)
            listed = self._get(f"/v1/model/versions/{quote(release_id, safe='@')}",
                               MAX_LISTING_BYTES)
            try:
                described = json.loads(listed) if listed is not None else None
            except ValueError:
                described = None
            model = _model_version(described) if isinstance(described, dict) else None
            if model is None or model.id != release_id:
                return InstallOutcome(False, release_id, None,
                                      "the coordinator lists no such model version")
            installed_at = self.installed_at(sub_model)  # -1: genesis, or not on record
            newer = self.runtime.loaded_version(sub_model) is None or (
                -1 < installed_at < model.created_at)
            outcome = self.install(model, current=newer)
            if outcome is None:
                return InstallOutcome(False, release_id, None, "the coordinator serves no proof "
                                      "or no weights for it", retry=True)
            if outcome.installed:
                note(self.say, f"weights: installed {release_id} for a task pinned to it",
                     **self._fields(release_id, sub_model))
            return outcome

    def _fields(self, model_version: str, sub_model: str) -> dict[str, Any]:
        """A model version's facts as structured log fields (``--log-format json``)."""
        return {"node_id": self.identity.node_id, "model_version": model_version,
                "sub_model": sub_model}

    def poll_once(self) -> PollResult:
        """One look at the API: install what is new and verified (module docstring)."""
        with self.lock:
            installed: list[str] = []
            refused: list[str] = []
            pending: list[str] = []
            new: set[str] = set()
            for version in self.candidates(self.releases()):
                try:
                    outcome = self.install(version)
                except WeightsUnavailable as error:  # this one's download: not the others'
                    pending.append(version.id)
                    log.info("weights %s not fetched (%s); trying again later", version.id,
                             error.message, extra=self._fields(version.id, version.sub_model))
                    continue
                if outcome is None:
                    if version.id not in self._skip:
                        pending.append(version.id)
                    continue
                if outcome.installed:
                    assert outcome.verification is not None
                    installed.append(version.id)
                    new.add(version.sub_model)
                    note(self.say, f"weights: installed {version.id} (OpenTimestamps proof "
                         f"confirmed in Bitcoin block {outcome.verification.height})",
                         **self._fields(version.id, version.sub_model), verified=True,
                         block_height=outcome.verification.height)
                elif outcome.retry and not self._gives_up(outcome):
                    pending.append(version.id)
                    log.info("weights %s not installed yet (%s); trying again later",
                             version.id, outcome.reason,
                             extra={**self._fields(version.id, version.sub_model),
                                    "reason": outcome.reason})
                else:
                    refused.append(version.id)
                    self._skip[version.id] = outcome.reason
                    keeps = self.runtime.loaded_version(version.sub_model) or "genesis"
                    note(self.say, f"weights: refused {version.id}: {outcome.reason}; {keeps} "
                         "keeps answering", level=logging.WARNING,
                         **self._fields(version.id, version.sub_model), verified=False,
                         reason=outcome.reason, kept_version=keeps)
            self.prune(new)
            return PollResult(tuple(installed), tuple(refused), tuple(pending))

    def prune(self, sub_models: Collection[str]) -> list[str]:
        """Delete the kept versions of ``sub_models`` no task needs (module docstring); the
        ``sub_model@version`` ids deleted."""
        pinned = set(self.in_use())
        pruned: list[str] = []
        for sub_model in sorted(sub_models):
            current = self.runtime.loaded_version(sub_model)
            for version in prune_versions(self.runtime.model_dir, sub_model, current, pinned,
                                          self.keep_versions):
                pruned.append(f"{sub_model}@{version}")
        return pruned

    def _gives_up(self, outcome: InstallOutcome) -> bool:
        """Whether a pending proof is given up for good (``pending_versions = "skip"``)."""
        verdict = outcome.verification
        return (self.pending_versions == "skip" and verdict is not None
                and verdict.failure is FailureReason.PENDING_ONLY)

    def run(self, stop: threading.Event, interval_s: float) -> None:
        """Poll every ``interval_s`` until ``stop`` is set; errors are logged, never fatal."""
        node_id = self.identity.node_id
        while True:
            with poll_errors_logged(log, "weights watcher", node_id):
                try:
                    self.poll_once()
                except ClearnetOnly as exc:
                    note(self.say, f"weights watcher stopped: {exc.message}",
                         level=logging.WARNING, node_id=node_id, error=exc.message)
                    return
            if stop.wait(interval_s):
                return


def _model_version(release: dict[str, Any]) -> ModelVersion | None:
    """A version as the API describes it, or None (logged) when it describes it oddly."""
    try:
        return ModelVersion(
            version=release["version"], sub_model=release["sub_model"],
            digest=release["digest"], created_at=release["created_at"],
            parent=release.get("parent"),
        )
    except (KeyError, TypeError, DomainError) as exc:
        log.warning("skipping a model version the API described oddly: %s", exc)
        return None


__all__ = ["PollResult", "WeightsUnavailable", "WeightsWatcher"]
