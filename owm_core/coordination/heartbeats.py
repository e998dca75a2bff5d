"""Heartbeats: verifying them fast and admitting them (SRS-NODE-04, SRS-SEC-03, SRS-PERF-04).

This module owns the rule a heartbeat must pass before the coordinator records it:

* :func:`verify_heartbeat` checks the envelope's shape and signature (a fast path for
  canonical envelopes; the full path decides anything else, with the same verdict and errors);
* :func:`admit_heartbeat` then admits it: the registered key signed it, the manifest digest it
  cites is the node's current one (SRS-NODE-04), and only then does the replay guard accept
  its nonce — so neither a forged envelope nor a beat from the wrong key or a stale manifest
  can burn a nonce.

Writes are batched by the caller (``NodeRepository.record_heartbeats``); which node is known
(its key and current manifest digest, :class:`KnownNode`) is looked up by the caller, which
may cache it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import NamedTuple

import attrs

from owm_core.coordination.wire import open_envelope
from owm_core.errors import DomainError, InvalidTransition, NotFound, SignatureInvalid
from owm_core.identity.envelopes import (
    INT_MAX,
    EnvelopeKind,
    Heartbeat,
    ReplayGuard,
    open_body,
    signed_prefix,
)
from owm_core.identity.keys import node_id_from_public_key, verify_signature


class HeartbeatFields(NamedTuple):
    """What the coordinator needs of one verified heartbeat envelope (SRS-PERF-04)."""

    node_id: str
    signer: str
    nonce: str
    issued_at: int
    seq: int
    manifest_digest: str


_CANONICAL_HEARTBEAT_RE = re.compile(
    rb'\{"body":\{"manifest_digest":"([0-9a-f]{64})","node_id":"(n[0-9a-f]{40})",'
    rb'"seq":(0|[1-9][0-9]{0,18})\},"issued_at":(0|[1-9][0-9]{0,18}),"kind":"heartbeat",'
    rb'"nonce":"([0-9a-f]{32})"(,"signature":"([0-9a-f]{128})","signer":"([0-9a-f]{64})"\})'
)


@functools.lru_cache(maxsize=65_536)
def _signer_node_id(public_key_hex: str) -> str:
    # Heartbeats come from the same few thousand keys again and again (SRS-PERF-04).
    return node_id_from_public_key(public_key_hex)


def _canonical_heartbeat(raw: bytes, audience: str) -> HeartbeatFields | None:
    """The fields of ``raw`` if it is a canonical heartbeat validly signed for ``audience``;
    else ``None``.

    Why: the full path (JSON, attrs validators, re-encoding) costs about as much Python time as
    the Ed25519 verification itself. One anchored regular expression admits only the exact
    canonical bytes of a heartbeat whose every field already has the shape the validators
    demand (lower-case hex, ``n`` + 40 hex, canonical integers), so whenever this returns fields
    the full path accepts the same envelope with the same fields; anything else returns
    ``None`` and the full path decides (and names the error).
    """
    if type(raw) is not bytes:
        return None
    found = _CANONICAL_HEARTBEAT_RE.fullmatch(raw)
    if found is None:
        return None
    digest, node_id, seq, issued_at, nonce, _, signature, signer = found.groups()
    seq_value, issued_value = int(seq), int(issued_at)
    if seq_value > INT_MAX or issued_value > INT_MAX:
        return None
    signer_hex = signer.decode("ascii")
    node = node_id.decode("ascii")
    if _signer_node_id(signer_hex) != node:
        return None
    prefix = signed_prefix(EnvelopeKind.HEARTBEAT, audience)  # cached per audience
    message = prefix + raw[: found.start(6)] + b',"signer":"' + signer + b'"}'
    try:
        verify_signature(signer_hex, message, bytes.fromhex(signature.decode("ascii")))
    except SignatureInvalid:
        return None
    return HeartbeatFields(
        node, signer_hex, nonce.decode("ascii"), issued_value, seq_value, digest.decode("ascii")
    )


def verify_heartbeat(raw: bytes, audience: str) -> HeartbeatFields:
    """Parse and verify one heartbeat envelope, signature and body (SRS-NODE-04, SRS-PERF-04),
    signed for the coordinator whose public key is ``audience`` (SRS-SEC-03).

    The same verdict, fields and errors as :func:`open_envelope` + :func:`open_body` (and the
    body naming its signer's node id), at a fraction of the cost for canonical envelopes. It
    does not consult a replay guard: :func:`admit_heartbeat` does, with the result (signature
    first, so that forged envelopes cannot burn nonces).
    """
    fast = _canonical_heartbeat(raw, audience)
    if fast is not None:
        return fast
    envelope = open_envelope(raw, EnvelopeKind.HEARTBEAT, "heartbeat_envelope", audience)
    body = open_body(envelope)
    assert isinstance(body, Heartbeat)
    return HeartbeatFields(
        body.node_id,
        envelope.signer,
        envelope.nonce,
        envelope.issued_at,
        body.seq,
        body.manifest_digest,
    )


@attrs.frozen
class KnownNode:
    """What admitting a heartbeat needs to know of a registered node (SRS-NODE-04).

    The key it registered with, and the digest of the manifest the coordinator currently holds
    for it. The caller looks it up (and may cache it); ``None`` stands for "not registered".
    """

    public_key: str
    manifest_digest: str


class AdmittedHeartbeat(NamedTuple):
    """An admitted heartbeat: the node it proves alive, and when (the coordinator's ``now``)."""

    node_id: str
    at: int


def admit_heartbeat(
    beat: HeartbeatFields, known: KnownNode | None, guard: ReplayGuard, now: int
) -> AdmittedHeartbeat:
    """Admit one verified heartbeat (SRS-NODE-04, SRS-SEC-03); raise the error that refuses it.

    In order: the node must be registered (NotFound), the heartbeat signed by its registered
    key (SignatureInvalid), citing the manifest the coordinator holds for it
    (InvalidTransition: the node should send its new manifest), and only then is its nonce
    offered to ``guard`` (ReplayRejected on a replay or a stale timestamp; ReplayGuardFull, a
    rate limit, when the guard has no room for it now). A refused heartbeat therefore never
    burns a nonce. ``beat`` must come from :func:`verify_heartbeat`.
    """
    verdict = admit_heartbeats([(beat, known)], guard, now)[0]
    if isinstance(verdict, DomainError):
        raise verdict
    return verdict


def admit_heartbeats(
    beats: Sequence[tuple[HeartbeatFields, KnownNode | None]], guard: ReplayGuard, now: int
) -> list[AdmittedHeartbeat | DomainError]:
    """:func:`admit_heartbeat` for a batch: each verified heartbeat with its node as looked up,
    admitted or refused by the same rules, in order, with one ledger round trip for the nonces
    of all (:meth:`ReplayGuard.accept_many`; SRS-PERF-04 with several coordinators on one
    database, SRS-COORD-05). Only heartbeats that pass the key and manifest checks offer their
    nonce, so a refused heartbeat still never burns one."""
    verdicts: list[AdmittedHeartbeat | DomainError] = []
    offered: list[int] = []
    for beat, known in beats:
        try:
            _check_known(beat, known)
        except DomainError as exc:
            verdicts.append(exc)
            continue
        offered.append(len(verdicts))
        verdicts.append(AdmittedHeartbeat(beat.node_id, now))
    refusals = guard.accept_many(
        [(b.signer, b.nonce, b.issued_at) for b in (beats[i][0] for i in offered)], now
    )
    for index, refusal in zip(offered, refusals, strict=True):
        if refusal is not None:
            verdicts[index] = refusal
    return verdicts


def _check_known(beat: HeartbeatFields, known: KnownNode | None) -> None:
    if known is None:
        raise NotFound(f"node {beat.node_id} is not registered")
    if known.public_key != beat.signer:
        raise SignatureInvalid("heartbeat is not signed by the registered key")
    if known.manifest_digest != beat.manifest_digest:
        raise InvalidTransition(
            "heartbeat cites a manifest the coordinator does not hold; send the new manifest"
        )
