"""Verifying and admitting heartbeats (owm_core.coordination.heartbeats): SRS-NODE-04, SRS-SEC-03.

A verified heartbeat is admitted only from the node's registered key, citing the manifest the
coordinator holds for it, and with a nonce the replay guard has not seen; a refused heartbeat
leaves the guard as it was.
"""

from __future__ import annotations

import json
import os
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from owm_core.coordination.heartbeats import (
    HeartbeatFields,
    KnownNode,
    admit_heartbeat,
    admit_heartbeats,
    verify_heartbeat,
)
from owm_core.coordination.wire import open_envelope, verify_wire
from owm_core.errors import (
    DomainError,
    InvalidTransition,
    NotFound,
    ReplayRejected,
    SignatureInvalid,
)
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    ENVELOPE_DOMAIN,
    CapabilityManifest,
    EnvelopeKind,
    Heartbeat,
    ReplayGuard,
    open_body,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from tests.reveals import COORDINATOR_KEY_HEX

NOW = 1_800_000_000
MANIFEST = CapabilityManifest(
    tier=Tier.T1, vram_mb=0, ram_mb=16_000, bandwidth_mbps=100, gpu_vendor="none", gpu_count=0
)
WHO = Identity.from_seed(b"\x01" * 32)
OTHER = Identity.from_seed(b"\x02" * 32)
REGISTERED = KnownNode(WHO.public_key_hex, MANIFEST.digest())
AUDIENCE = COORDINATOR_KEY_HEX
"""The coordinator that verifies: heartbeats are signed for it."""
ELSEWHERE = Identity.from_seed(b"\x0d" * 32).public_key_hex
"""Another coordinator (a testnet's): heartbeats signed for it must not verify here."""

hex_digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
nonces = st.binary(min_size=16, max_size=16).map(bytes.hex)
seqs = st.integers(0, 2**31)
skews = st.integers(-60, 60)


def beat(
    who: Identity = WHO, nonce: str = "00" * 16, at: int = NOW, digest: str | None = None
) -> HeartbeatFields:
    """The fields of a verified heartbeat signed by ``who``, citing ``digest``."""
    return HeartbeatFields(
        who.node_id, who.public_key_hex, nonce, at, 1, digest or MANIFEST.digest()
    )


def test_a_sealed_heartbeat_is_verified_then_admitted_and_its_replay_refused() -> None:
    guard = ReplayGuard()
    body = Heartbeat(node_id=WHO.node_id, seq=1, manifest_digest=MANIFEST.digest())
    raw = envelopes.to_bytes(envelopes.seal(WHO, EnvelopeKind.HEARTBEAT, body, os.urandom(16), NOW,
                                            audience=AUDIENCE))

    admitted = admit_heartbeat(verify_heartbeat(raw, audience=AUDIENCE), REGISTERED, guard, NOW)

    assert admitted == (WHO.node_id, NOW)
    with pytest.raises(ReplayRejected):
        admit_heartbeat(verify_heartbeat(raw, audience=AUDIENCE), REGISTERED, guard, NOW + 1)


def test_a_tampered_heartbeat_is_refused_before_it_reaches_the_replay_guard() -> None:
    body = Heartbeat(node_id=WHO.node_id, seq=1, manifest_digest=MANIFEST.digest())
    sealed = envelopes.seal(WHO, EnvelopeKind.HEARTBEAT, body, os.urandom(16), NOW,
                            audience=AUDIENCE)
    forged = attrs.evolve(sealed, body={**sealed.body, "seq": 2})

    with pytest.raises(SignatureInvalid):
        verify_heartbeat(envelopes.to_bytes(forged), audience=AUDIENCE)


@settings(max_examples=50)
@given(nonce=nonces, skew=skews)
def test_a_beat_from_an_unregistered_node_is_refused_and_burns_no_nonce(
    nonce: str, skew: int
) -> None:
    guard = ReplayGuard()

    with pytest.raises(NotFound, match="is not registered"):
        admit_heartbeat(beat(nonce=nonce, at=NOW + skew), None, guard, NOW)
    assert len(guard) == 0


@settings(max_examples=50)
@given(nonce=nonces, skew=skews)
def test_a_beat_signed_by_another_key_than_the_registered_one_is_refused(
    nonce: str, skew: int
) -> None:
    guard = ReplayGuard()
    forged = beat(OTHER, nonce, NOW + skew)._replace(node_id=WHO.node_id)

    with pytest.raises(SignatureInvalid, match="registered key"):
        admit_heartbeat(forged, REGISTERED, guard, NOW)
    assert len(guard) == 0
    assert admit_heartbeat(beat(nonce=nonce, at=NOW + skew), REGISTERED, guard, NOW)


@settings(max_examples=50)
@given(nonce=nonces, skew=skews, stale=hex_digests)
def test_a_beat_citing_a_manifest_the_coordinator_does_not_hold_is_refused(
    nonce: str, skew: int, stale: str
) -> None:
    assume(stale != REGISTERED.manifest_digest)
    guard = ReplayGuard()
    cited = beat(nonce=nonce, at=NOW + skew, digest=stale)

    with pytest.raises(InvalidTransition, match="send the new manifest"):
        admit_heartbeat(cited, REGISTERED, guard, NOW)
    assert len(guard) == 0


@settings(max_examples=50)
@given(nonce=nonces, skew=skews, later=st.integers(0, 60))
def test_a_fresh_beat_from_the_registered_key_is_admitted_exactly_once(
    nonce: str, skew: int, later: int
) -> None:
    guard = ReplayGuard()
    fresh = beat(nonce=nonce, at=NOW + skew)

    assert admit_heartbeat(fresh, REGISTERED, guard, NOW) == (WHO.node_id, NOW)
    with pytest.raises(ReplayRejected):
        admit_heartbeat(fresh, REGISTERED, guard, NOW + later)
    assert len(guard) == 1


@settings(max_examples=50)
@given(
    nonce=nonces,
    refusal=st.sampled_from(["unknown", "other key", "stale manifest"]),
    seq=seqs,
)
def test_the_guard_does_not_remember_the_nonce_of_a_refused_beat(
    nonce: str, refusal: str, seq: int
) -> None:
    guard = ReplayGuard()
    good = beat(nonce=nonce)._replace(seq=seq)
    refused: tuple[HeartbeatFields, KnownNode | None] = {
        "unknown": (good, None),
        "other key": (good, KnownNode(OTHER.public_key_hex, MANIFEST.digest())),
        "stale manifest": (good, attrs.evolve(REGISTERED, manifest_digest="ff" * 32)),
    }[refusal]

    with pytest.raises((NotFound, SignatureInvalid, InvalidTransition)):
        admit_heartbeat(*refused, guard, NOW)

    assert admit_heartbeat(good, REGISTERED, guard, NOW) == (WHO.node_id, NOW)


# --------------------------------------------------------------------------- verification


HB_SIGNERS = [Identity.from_seed(bytes([i]) * 32) for i in range(1, 4)]
INT64_EDGES = st.one_of(st.integers(0, 5), st.integers(2**63 - 2, 2**63 + 1), st.integers(-2, -1))


def signed_heartbeat_wire(
    who: Identity, body: dict[str, Any], issued_at: int, nonce: str, kind: str = "heartbeat",
    audience: str = AUDIENCE,
) -> bytes:
    """Wire bytes signed over any body and fields for the coordinator ``audience``, bypassing
    seal()'s checks (for the oracle)."""
    unsigned = {"body": body, "issued_at": issued_at, "kind": kind, "nonce": nonce}
    unsigned["signer"] = who.public_key_hex
    message = (
        ENVELOPE_DOMAIN
        + kind.encode()
        + b"\x00"
        + audience.encode()
        + b"\x00"
        + json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()
    )
    wire = {**unsigned, "signature": who.sign(message).hex()}
    return json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()


def full_heartbeat_path(raw: bytes) -> object:
    """The verdict of the general path: the fields read, or the error's type and message."""
    try:
        envelope = open_envelope(raw, EnvelopeKind.HEARTBEAT, "heartbeat_envelope",
                                 audience=AUDIENCE)
        body = open_body(envelope)
    except DomainError as exc:
        return type(exc), str(exc)
    assert isinstance(body, Heartbeat)
    return (body.node_id, envelope.signer, envelope.nonce, envelope.issued_at, body.seq,
            body.manifest_digest)  # fmt: skip


def fast_heartbeat_path(raw: bytes) -> object:
    try:
        return tuple(verify_heartbeat(raw, audience=AUDIENCE))
    except DomainError as exc:
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None)
@given(
    signer=st.sampled_from(HB_SIGNERS),
    named=st.sampled_from(["own", "other", "upper", "short"]),
    seq=INT64_EDGES,
    issued_at=INT64_EDGES,
    digest=st.sampled_from([MANIFEST.digest(), MANIFEST.digest().upper(), "ab" * 31]),
    nonce=st.sampled_from(["0f" * 16, "0F" * 16, "0f" * 15]),
    extra=st.booleans(),
    kind=st.sampled_from(["heartbeat", "heartbeat", "task_proof"]),
    audience=st.sampled_from([AUDIENCE, AUDIENCE, ELSEWHERE]),
    mutation=st.one_of(
        st.none(),
        st.tuples(st.integers(0, 600), st.integers(0, 255)),
        st.tuples(st.integers(0, 600), st.none()),
    ),
)
def test_the_heartbeat_fast_path_gives_the_full_paths_verdict(
    signer: Identity,
    named: str,
    seq: int,
    issued_at: int,
    digest: str,
    nonce: str,
    extra: bool,
    kind: str,
    audience: str,
    mutation: tuple[int, int | None] | None,
) -> None:
    node_id = {
        "own": signer.node_id,
        "other": HB_SIGNERS[0].node_id if signer is not HB_SIGNERS[0] else HB_SIGNERS[1].node_id,
        "upper": signer.node_id.upper(),
        "short": signer.node_id[:-1],
    }[named]
    body: dict[str, Any] = {"manifest_digest": digest, "node_id": node_id, "seq": seq}
    if extra:
        body["zz"] = 1
    raw = signed_heartbeat_wire(signer, body, issued_at, nonce, kind, audience)
    if mutation is not None:
        at, value = mutation
        at %= len(raw)
        raw = raw[:at] + (b"" if value is None else bytes([value])) + raw[at + 1 :]

    assert fast_heartbeat_path(raw) == full_heartbeat_path(raw)


def test_a_heartbeat_signed_for_another_coordinator_is_refused_fast_as_on_the_full_path() -> None:
    body = Heartbeat(node_id=WHO.node_id, seq=1, manifest_digest=MANIFEST.digest())
    elsewhere = envelopes.seal(WHO, EnvelopeKind.HEARTBEAT, body, "cd" * 16, NOW,
                               audience=ELSEWHERE)  # fmt: skip
    raw = envelopes.to_bytes(elsewhere)

    verdict = full_heartbeat_path(raw)
    assert isinstance(verdict, tuple) and verdict[0] is SignatureInvalid
    assert fast_heartbeat_path(raw) == verdict
    with pytest.raises(SignatureInvalid) as caught:
        verify_wire(raw, elsewhere, AUDIENCE)
    assert (type(caught.value), str(caught.value)) == verdict
    verify_wire(raw, elsewhere, ELSEWHERE)  # where it was meant to go, it verifies
    assert verify_heartbeat(raw, ELSEWHERE).node_id == WHO.node_id


def test_a_canonical_heartbeat_takes_the_fast_path_with_the_full_paths_fields() -> None:
    who = HB_SIGNERS[2]
    body = Heartbeat(node_id=who.node_id, seq=7, manifest_digest=MANIFEST.digest())
    raw = envelopes.to_bytes(envelopes.seal(who, EnvelopeKind.HEARTBEAT, body, "ab" * 16, NOW,
                                            audience=AUDIENCE))

    fields = verify_heartbeat(raw, audience=AUDIENCE)

    assert tuple(fields) == full_heartbeat_path(raw)
    assert (fields.node_id, fields.seq, fields.issued_at) == (who.node_id, 7, NOW)
    with pytest.raises(SignatureInvalid):
        verify_heartbeat(raw.replace(b'"seq":7', b'"seq":8'), audience=AUDIENCE)
    spaced = raw.replace(b'"seq":7', b'"seq": 7')  # valid JSON, not canonical: full path
    spaced_fields = tuple(verify_heartbeat(spaced, audience=AUDIENCE))
    assert spaced_fields == full_heartbeat_path(spaced) == tuple(fields)


@settings(max_examples=50)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([WHO, OTHER]),
            st.sampled_from(["00" * 16, "11" * 16, "22" * 16]),
            skews,
            st.booleans(),  # the manifest the coordinator holds
            st.booleans(),  # registered at all
        ),
        max_size=12,
    )
)
def test_admitting_a_batch_refuses_and_admits_exactly_what_admitting_each_would(
    steps: list[tuple[Identity, str, int, bool, bool]],
) -> None:
    beats = [
        (beat(who, nonce, NOW + skew, None if current else "ee" * 32),
         REGISTERED if registered else None)
        for who, nonce, skew, current, registered in steps
    ]
    one, many = ReplayGuard(), ReplayGuard()

    def each(fields: HeartbeatFields, known: KnownNode | None) -> object:
        try:
            return admit_heartbeat(fields, known, one, NOW)
        except DomainError as exc:
            return (type(exc), exc.message)

    expected = [each(fields, known) for fields, known in beats]
    got = [
        (type(v), v.message) if isinstance(v, DomainError) else v
        for v in admit_heartbeats(beats, many, NOW)
    ]
    assert got == expected
    assert len(many) == len(one)
