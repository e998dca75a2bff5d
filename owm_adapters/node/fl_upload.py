"""The node's FL update: poisoned on a devnet's request, signed, and uploaded over clearnet.

Owns what happens after an ``fl_training`` task (schema ``owm.fl.train`` v1) trained in the
isolated worker (SRS-COORD-03, SRS-NET-04):

* :func:`attack_mode` — a devnet can make this node Byzantine: ``<data_dir>/attack`` holding
  ``poison`` (read for every task; absent, empty or ``none`` means honest). A poisoned update is
  the sign-flipped, boosted step of :mod:`owm_core.fl.attacks` (``Attack.SIGNFLIP``) away from
  the round's starting weights (:func:`poisoned`), which the robust aggregation rejects.
* :func:`post_update` — the signed update (:func:`owm_core.fl.updates.sign_update`, signed in
  the daemon: the identity key never enters the worker) is POSTed as JSON straight to the task's
  ``upload_url``: never through the control plane's SOCKS5 proxy, never through ``*_PROXY``
  environment variables, never to an ``.onion`` host and never following a redirect
  (:func:`~owm_adapters.node.weights.ensure_clearnet`). Transient failures are retried a
  few times (the upload is idempotent).
* :func:`proof_output` — what the task proof commits to instead of the weights (the weights go
  to the upload URL, not over the control plane). It is the same on every honest replica that
  trained the same partition from the same start: ``sub_model``, ``round``, ``base_version``,
  ``num_examples``, ``loss`` (hashed to 6 significant digits like every output float),
  ``parameters`` (how many values) and ``weights_digest``: SHA-256 of the canonical JSON
  ``{"weights": [...]}`` with each value rounded to ``FLOAT_DIGITS`` significant digits (the
  rounding :func:`owm_core.market.task_types.output_hash` applies), so CPUs that differ in the last
  bits
  still agree. The exact float32 digest is inside the signed upload.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs

from owm_adapters.models.architectures import TINYNET, architecture, flatten, from_named
from owm_adapters.net.destinations import (
    Resolver,
    check_node_target,
    clearnet_opener,
    resolve,
)
from owm_adapters.node.task_exec import load_weights
from owm_adapters.node.weights import ClearnetOnly, ensure_clearnet
from owm_core.access.destinations import DestinationPolicy, IPAddress
from owm_core.market.task_types import canonical_output

log = logging.getLogger(__name__)

ATTACK_FILE = "attack"
HONEST = "none"
POISON = "poison"
UPLOAD_PURPOSE = "FL uploads"
UPLOAD_ATTEMPTS = 3
POISON_SEED = 0


def attack_mode(data_dir: Path) -> str:
    """``poison`` when ``<data_dir>/attack`` asks for it, else ``none`` (read per task)."""
    try:
        text = (data_dir / ATTACK_FILE).read_text(encoding="utf-8").strip().lower()
    except (FileNotFoundError, NotADirectoryError):
        return HONEST
    except OSError as exc:
        log.warning("cannot read %s: %s; staying honest", data_dir / ATTACK_FILE, exc)
        return HONEST
    if text in {"", HONEST}:
        return HONEST
    if text == POISON:
        return POISON
    log.warning("unknown attack %r in %s; staying honest", text, data_dir / ATTACK_FILE)
    return HONEST


def starting_weights(data: Mapping[str, Any], model_dir: str | None) -> list[float]:
    """The round's starting model, flat: the task's ``global_weights`` or the installed version
    (what :func:`~owm_adapters.node.task_exec.run_training` started from)."""
    if "global_weights" in data:
        return [float(v) for v in data["global_weights"]]
    arch = architecture(str(data.get("model") or TINYNET))
    _, tensors = load_weights(model_dir, str(data["sub_model"]), arch)
    return [float(v) for v in flatten(from_named(arch, tensors))]


def poisoned(weights: Sequence[float], reference: Sequence[float]) -> list[float]:
    """The Byzantine update sent instead of ``weights``: :data:`owm_core.fl.attacks.Attack.SIGNFLIP`
    around ``reference`` (SRS-SEC-05; devnet attack mode only)."""
    import torch

    from owm_core.fl.attacks import Attack, poison

    own = torch.tensor([list(weights)], dtype=torch.float64)
    start = torch.tensor(list(reference), dtype=torch.float64)
    if start.shape[0] != own.shape[1]:
        raise ValueError(f"starting weights have {start.shape[0]} values, the update "
                         f"{own.shape[1]}")
    generator = torch.Generator().manual_seed(POISON_SEED)
    sent = poison(Attack.SIGNFLIP, reference=start, honest=own, own=own, generator=generator)
    return [float(v) for v in sent[0].tolist()]


def weights_digest(weights: Sequence[float]) -> str:
    """SHA-256 hex of ``{"weights": [...]}`` in canonical, rounded JSON (module docstring)."""
    return hashlib.sha256(canonical_output({"weights": [float(v) for v in weights]})).hexdigest()


def proof_output(training: Mapping[str, Any], weights: Sequence[float]) -> dict[str, Any]:
    """The ``fl_training`` output the proof commits to and the coordinator receives: the
    training result without the weights (module docstring)."""
    return {
        "sub_model": training["sub_model"],
        "round": training["round"],
        "base_version": training["base_version"],
        "num_examples": training["num_examples"],
        "loss": training["loss"],
        "parameters": len(weights),
        "weights_digest": weights_digest(weights),
    }


@attrs.frozen
class UploadOutcome:
    """How an upload ended: delivered (2xx), or why not (HTTP status and the server's words)."""

    delivered: bool
    status: int | None
    detail: str
    attempts: int

STRICT = DestinationPolicy()
"""The destinations a node contacts outside a devnet: public addresses only."""


def check_upload_url(
    url: str,
    proxy: str | None,
    policy: DestinationPolicy = STRICT,
    resolver: Resolver = resolve,
) -> IPAddress:
    """The checked address to connect to for ``url``. ClearnetOnly unless ``url`` can take an FL
    upload directly (http/https, not .onion, no proxy configured for it; SRS-NET-04);
    ``PolicyViolation`` when it names a loopback, private, link-local or cloud-metadata target
    that ``policy`` does not allow (no SSRF through task URLs, SRS-SEC-06)."""
    ensure_clearnet(UPLOAD_PURPOSE, url, proxy)
    if urlsplit(url).scheme not in {"http", "https"}:
        raise ClearnetOnly(f"{UPLOAD_PURPOSE} go over http(s), not {url}")
    addresses = check_node_target(url, policy, resolver)
    if not addresses:
        raise ClearnetOnly(f"{UPLOAD_PURPOSE}: {urlsplit(url).hostname} does not resolve")
    return addresses[0]


def post_update(
    url: str,
    body: Mapping[str, Any],
    *,
    proxy: str | None = None,
    policy: DestinationPolicy = STRICT,
    timeout_s: float = 30.0,
    attempts: int = UPLOAD_ATTEMPTS,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
    resolver: Resolver = resolve,
) -> UploadOutcome:
    """POST the signed update to ``url`` directly; retried on network errors and 5xx/408/429.

    Raises ClearnetOnly before anything is sent when ``url`` is an onion address or a proxy is
    configured for uploads, PolicyViolation when ``policy`` refuses its target; a refusal by
    the server (other 4xx) is returned, not retried.
    """
    address = check_upload_url(url, proxy, policy, resolver)
    data = json.dumps(dict(body), separators=(",", ":"), allow_nan=False).encode("utf-8")
    opener = clearnet_opener(address)
    detail = ""
    status: int | None = None
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(  # noqa: S310 (http/https checked above)
            url, data=data, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with opener.open(request, timeout=timeout_s) as response:
                text = response.read(4096).decode("utf-8", "replace")
                return UploadOutcome(True, int(response.status), text, attempt)
        except urllib.error.HTTPError as exc:
            status = exc.code
            detail = _problem_detail(exc)
            if status < 500 and status not in {408, 429}:
                return UploadOutcome(False, status, detail, attempt)
        except (urllib.error.URLError, OSError) as exc:
            status, detail = None, str(getattr(exc, "reason", exc))
        if attempt < attempts:
            sleep(backoff_s * 2 ** (attempt - 1))
    return UploadOutcome(False, status, detail, attempts)


def _problem_detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(4096).decode("utf-8", "replace")
    except OSError:
        return exc.reason if isinstance(exc.reason, str) else str(exc)
    try:
        problem = json.loads(raw)
    except ValueError:
        return raw[:300] or str(exc.reason)
    if isinstance(problem, dict) and problem.get("detail"):
        return str(problem["detail"])[:300]
    return raw[:300]


__all__ = [
    "ATTACK_FILE",
    "UploadOutcome",
    "attack_mode",
    "check_upload_url",
    "poisoned",
    "post_update",
    "proof_output",
    "starting_weights",
    "weights_digest",
]
