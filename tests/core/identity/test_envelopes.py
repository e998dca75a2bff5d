"""Signed envelopes: canonical encoding, sealing and verifying, wire form, bodies, replay."""

from __future__ import annotations

import contextlib
import copy
import json
from typing import Any

import attrs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from owm_core.errors import (
    InvalidValue,
    RateLimited,
    ReplayGuardFull,
    ReplayRejected,
    SignatureInvalid,
)
from owm_core.identity.envelopes import (
    DEFAULT_FRESHNESS_WINDOW_S,
    AckVerdict,
    CapabilityManifest,
    Envelope,
    EnvelopeKind,
    Heartbeat,
    MaintainerAcknowledgement,
    ReplayGuard,
    TaskProof,
    TaskRejection,
    canonical_bytes,
    from_bytes,
    open_body,
    seal,
    to_bytes,
    verify,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from tests.unbound import unbound

NODE = Identity.from_seed(b"\x11" * 32)
OTHER = Identity.from_seed(b"\x22" * 32)
AUDIENCE = Identity.from_seed(b"\x0c" * 32).public_key_hex
"""The coordinator the envelopes are signed for."""
T0 = 1_700_000_000
HASH = "ab" * 32

MANIFEST = CapabilityManifest(
    tier=Tier.T2, vram_mb=24_576, ram_mb=65_536, bandwidth_mbps=1_000, gpu_vendor="nvidia",
    gpu_count=2,
)  # fmt: skip

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=20)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
nonces = st.binary(min_size=16, max_size=16)
kinds = st.sampled_from(list(EnvelopeKind))


def _seal(body: Any = None, nonce: bytes = b"\x00" * 16, issued_at: int = T0) -> Envelope:
    return seal(NODE, EnvelopeKind.TASK_PROOF, body or {"x": 1}, nonce, issued_at,
                audience=AUDIENCE)


# --- canonical encoding -------------------------------------------------------------------


def test_canonical_encoding_is_sorted_compact_utf8_json() -> None:
    value = {"b": [1, True, None], "a": "é", "c": {"z": 0, "y": "x"}}
    assert canonical_bytes(value) == '{"a":"é","b":[1,true,null],"c":{"y":"x","z":0}}'.encode()


@given(body=bodies, data=st.data())
@settings(max_examples=100)
def test_canonical_encoding_is_deterministic_and_independent_of_key_order(
    body: dict[str, Any], data: st.DataObject
) -> None:
    keys = data.draw(st.permutations(list(body)))
    reordered = {key: body[key] for key in keys}
    assert canonical_bytes(reordered) == canonical_bytes(body)
    assert json.loads(canonical_bytes(body)) == body


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"vram_gb": 7.5}, "value.vram_gb"),
        ({"a": [1, 2, 0.0]}, "value.a[2]"),
        ({"a": {1: "x"}}, "value.a"),
        ({"a": (1, 2)}, "value.a"),
        ({"a": b"raw"}, "value.a"),
        ({"a": 2**63}, "value.a"),
        ({"a": float("nan")}, "value.a"),
    ],
)
def test_non_canonical_values_are_refused_naming_the_path(value: object, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        canonical_bytes(value)
    assert caught.value.field == field


@given(number=st.floats(allow_nan=True, allow_infinity=True))
@settings(max_examples=30)
def test_a_float_anywhere_in_a_body_cannot_be_sealed(number: float) -> None:
    with pytest.raises(InvalidValue) as caught:
        _seal({"metrics": {"loss": [number]}})
    assert caught.value.field == "body.metrics.loss[0]"


# --- seal and verify ----------------------------------------------------------------------


@given(body=bodies, kind=kinds, nonce=nonces, issued_at=st.integers(0, 2**40))
@settings(max_examples=60)
def test_a_sealed_envelope_verifies_and_survives_the_wire(
    body: dict[str, Any], kind: EnvelopeKind, nonce: bytes, issued_at: int
) -> None:
    envelope = seal(NODE, kind, body, nonce, issued_at, audience=AUDIENCE)
    verify(envelope, audience=AUDIENCE)
    assert envelope.signer == NODE.public_key_hex
    assert envelope.nonce == nonce.hex()
    again = from_bytes(to_bytes(envelope))
    assert again == envelope
    assert to_bytes(again) == to_bytes(envelope)
    verify(again, audience=AUDIENCE)


def _flip_bit(text: str, bit: int) -> str:
    raw = bytearray(text.encode("utf-8"))
    raw[bit // 8] ^= 1 << (bit % 8)
    return raw.decode("utf-8", errors="surrogateescape")


@given(body=bodies, data=st.data())
@settings(max_examples=80)
def test_any_single_bit_change_of_body_signature_or_signer_fails_verification(
    body: dict[str, Any], data: st.DataObject
) -> None:
    envelope = _seal(body)
    target = data.draw(st.sampled_from(["signature", "signer", "body", "nonce"]))
    if target == "body":
        wire = canonical_bytes(envelope.body)
        bit = data.draw(st.integers(0, len(wire) * 8 - 1))
        raw = bytearray(wire)
        raw[bit // 8] ^= 1 << (bit % 8)
        try:
            changed_body = json.loads(raw.decode("utf-8"))
            tampered = attrs.evolve(envelope, body=changed_body)
        except (ValueError, InvalidValue):
            return  # the flip broke the JSON itself: such bytes never reach verify
        if canonical_bytes(tampered.body) == wire:
            return  # e.g. a flip inside whitespace-free JSON that decodes to the same value
    else:
        raw_hex = bytes.fromhex(getattr(envelope, target))
        bit = data.draw(st.integers(0, len(raw_hex) * 8 - 1))
        flipped = bytearray(raw_hex)
        flipped[bit // 8] ^= 1 << (bit % 8)
        tampered = attrs.evolve(envelope, **{target: flipped.hex()})  # type: ignore[arg-type]
    with pytest.raises(SignatureInvalid):
        verify(tampered, audience=AUDIENCE)


def test_every_single_bit_flip_of_the_wire_bytes_is_refused_or_fails_verification() -> None:
    envelope = seal(NODE, EnvelopeKind.HEARTBEAT, TYPED[1], b"\x03" * 16, T0, audience=AUDIENCE)
    wire = to_bytes(envelope)
    for bit in range(len(wire) * 8):
        raw = bytearray(wire)
        raw[bit // 8] ^= 1 << (bit % 8)
        try:
            parsed = from_bytes(bytes(raw))
        except InvalidValue:
            continue
        with pytest.raises(SignatureInvalid):
            verify(parsed, audience=AUDIENCE)


@pytest.mark.parametrize(
    "change",
    [
        {"issued_at": T0 + 1},
        {"kind": EnvelopeKind.HEARTBEAT},
        {"signer": OTHER.public_key_hex},
        {"body": {"x": 2}},
        {"body": {"x": 1, "y": 1}},
    ],
)
def test_changing_any_signed_field_fails_verification(change: dict[str, Any]) -> None:
    with pytest.raises(SignatureInvalid):
        verify(attrs.evolve(_seal(), **change), audience=AUDIENCE)


audiences = st.binary(min_size=32, max_size=32).map(
    lambda seed: Identity.from_seed(seed).public_key_hex
)


@settings(max_examples=50, deadline=None)
@given(kind=kinds, nonce=nonces, audience=audiences, other=audiences)
def test_an_envelope_sealed_for_one_coordinator_verifies_only_for_it(
    kind: EnvelopeKind, nonce: bytes, audience: str, other: str
) -> None:
    envelope = seal(NODE, kind, {"x": 1}, nonce, T0, audience=audience)
    verify(envelope, audience=audience)
    verify(envelope, audience=audience, recorded=True)
    if other != audience:
        with pytest.raises(SignatureInvalid):
            verify(envelope, audience=other)
        with pytest.raises(SignatureInvalid):
            verify(envelope, audience=other, recorded=True)


@given(kind=kinds, nonce=nonces)
def test_an_unbound_signature_verifies_only_as_a_recorded_envelope(
    kind: EnvelopeKind, nonce: bytes
) -> None:
    old = unbound(seal(NODE, kind, {"x": 1}, nonce, T0, audience=AUDIENCE), NODE)
    with pytest.raises(SignatureInvalid):
        verify(old, audience=AUDIENCE)
    verify(old, audience=AUDIENCE, recorded=True)
    verify(old, audience=OTHER.public_key_hex, recorded=True)  # it names no coordinator
    with pytest.raises(SignatureInvalid):
        verify(attrs.evolve(old, issued_at=T0 + 1), audience=AUDIENCE, recorded=True)


def test_an_audience_that_is_not_a_public_key_is_refused_naming_it() -> None:
    with pytest.raises(InvalidValue, match="audience"):
        seal(NODE, EnvelopeKind.TASK_PROOF, {}, b"\x00" * 16, T0, audience="mainnet")
    with pytest.raises(InvalidValue, match="audience"):
        verify(_seal(), audience=AUDIENCE.upper())


def test_a_signature_cannot_be_reused_under_another_kind_or_outside_envelopes() -> None:
    envelope = _seal()
    unsigned = envelope.unsigned()
    raw_signature = NODE.sign(canonical_bytes(unsigned))  # no domain separation
    with pytest.raises(SignatureInvalid):
        verify(attrs.evolve(envelope, signature=raw_signature.hex()), audience=AUDIENCE)


def test_sealing_refuses_a_typed_body_of_another_kind_and_a_short_nonce() -> None:
    with pytest.raises(InvalidValue) as caught:
        seal(NODE, EnvelopeKind.HEARTBEAT, MANIFEST, b"\x00" * 16, T0, audience=AUDIENCE)
    assert caught.value.field == "body"
    with pytest.raises(InvalidValue) as caught:
        seal(NODE, EnvelopeKind.TASK_PROOF, {}, b"\x00" * 15, T0, audience=AUDIENCE)
    assert caught.value.field == "nonce"


# --- wire form ----------------------------------------------------------------------------


def _wire(**changes: Any) -> bytes:
    wire = json.loads(to_bytes(_seal()))
    for key, value in changes.items():
        if value is ...:
            del wire[key]
        else:
            wire[key] = value
    return json.dumps(wire).encode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"not json", "envelope"),
        (b"\xff\xfe", "envelope"),
        (b"[1, 2]", "envelope"),
        (b'{"a": 1, "a": 2}', "envelope"),
        (b'{"issued_at": 1.5}', "envelope"),
        (b'{"issued_at": NaN}', "envelope"),
        (b"[" * 100_000, "envelope"),
        (b" " * 70_000, "envelope"),
        (_wire(kind=...), "kind"),
        (_wire(signature=...), "signature"),
        (_wire(extra=1), "extra"),
        (_wire(kind="gossip"), "kind"),
        (_wire(signer="AB" * 32), "signer"),
        (_wire(signer=7), "signer"),
        (_wire(nonce="00" * 15), "nonce"),
        (_wire(issued_at=-1), "issued_at"),
        (_wire(issued_at="1700000000"), "issued_at"),
        (_wire(issued_at=True), "issued_at"),
        (_wire(body=[1]), "body"),
        (_wire(body={"x": 2**64}), "body.x"),
        (_wire(signature="00" * 63), "signature"),
    ],
)
def test_malformed_wire_bytes_are_refused_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        from_bytes(data)
    assert caught.value.field == field


def test_whitespace_and_key_order_on_the_wire_do_not_change_what_was_signed() -> None:
    envelope = _seal({"b": 1, "a": [1, 2]})
    loose = json.dumps(json.loads(to_bytes(envelope)), indent=2, sort_keys=False).encode()
    parsed = from_bytes(loose)
    verify(parsed, audience=AUDIENCE)
    assert to_bytes(parsed) == to_bytes(envelope)


# --- typed bodies -------------------------------------------------------------------------

TYPED: list[Any] = [
    MANIFEST,
    Heartbeat(node_id=NODE.node_id, seq=7, manifest_digest=MANIFEST.digest()),
    TaskProof(task_id="task-42", output_hash=HASH, execution_ms=1_250, attestation={"gpu": "x"}),
    MaintainerAcknowledgement(
        node_id=OTHER.node_id, evidence_hash=HASH, reason="fake_proof", verdict=AckVerdict.SLASH
    ),
    TaskRejection(task_id="task-42:0", field="input.prompt", reason="must be a string"),
]


@pytest.mark.parametrize("typed", TYPED, ids=lambda t: type(t).__name__)
def test_typed_bodies_round_trip_through_a_sealed_envelope(typed: Any) -> None:
    envelope = seal(NODE, typed.KIND, typed, b"\x01" * 16, T0, audience=AUDIENCE)
    wire = from_bytes(to_bytes(envelope))
    verify(wire, audience=AUDIENCE)
    assert open_body(wire) == typed
    assert type(typed).from_body(typed.to_body()) == typed


@pytest.mark.parametrize(
    ("cls", "changes", "field"),
    [
        (CapabilityManifest, {"vram_mb": 7.5}, "vram_mb"),
        (CapabilityManifest, {"vram_mb": -1}, "vram_mb"),
        (CapabilityManifest, {"ram_mb": True}, "ram_mb"),
        (CapabilityManifest, {"tier": "t9"}, "tier"),
        (CapabilityManifest, {"gpu_vendor": "NVIDIA"}, "gpu_vendor"),
        (CapabilityManifest, {"gpu_count": "2"}, "gpu_count"),
        (CapabilityManifest, {"bandwidth_mbps": 100.0}, "bandwidth_mbps"),
        (Heartbeat, {"node_id": "n123"}, "node_id"),
        (Heartbeat, {"seq": -1}, "seq"),
        (Heartbeat, {"manifest_digest": "AB" * 32}, "manifest_digest"),
        (TaskProof, {"output_hash": "ab" * 31}, "output_hash"),
        (TaskProof, {"task_id": ""}, "task_id"),
        (TaskProof, {"execution_ms": 1.0}, "execution_ms"),
        (TaskProof, {"attestation": {"tflops": 1.5}}, "attestation.tflops"),
        (TaskProof, {"attestation": []}, "attestation"),
        (MaintainerAcknowledgement, {"verdict": "maybe"}, "verdict"),
        (MaintainerAcknowledgement, {"evidence_hash": None}, "evidence_hash"),
        (MaintainerAcknowledgement, {"reason": "Bad Reason"}, "reason"),
        (TaskRejection, {"task_id": "no spaces"}, "task_id"),
        (TaskRejection, {"field": ""}, "field"),
        (TaskRejection, {"reason": "x" * 1_001}, "reason"),
        (TaskRejection, {"reason": 3}, "reason"),
    ],
)
def test_invalid_body_values_are_refused_naming_the_field(
    cls: Any, changes: dict[str, Any], field: str
) -> None:
    typed = next(t for t in TYPED if isinstance(t, cls))
    body = {**typed.to_body(), **changes}
    with pytest.raises(InvalidValue) as caught:
        cls.from_body(body)
    assert caught.value.field == field


@pytest.mark.parametrize("typed", TYPED, ids=lambda t: type(t).__name__)
def test_bodies_with_missing_or_unknown_fields_are_refused(typed: Any) -> None:
    body = typed.to_body()
    first = sorted(body)[0]
    with pytest.raises(InvalidValue) as caught:
        type(typed).from_body({k: v for k, v in body.items() if k != first})
    assert caught.value.field == first
    with pytest.raises(InvalidValue) as caught:
        type(typed).from_body({**body, "zzz": 1})
    assert caught.value.field == "zzz"


def test_a_heartbeat_must_name_the_node_id_of_its_signer() -> None:
    forged = Heartbeat(node_id=OTHER.node_id, seq=1, manifest_digest=MANIFEST.digest())
    envelope = seal(NODE, EnvelopeKind.HEARTBEAT, forged, b"\x02" * 16, T0, audience=AUDIENCE)
    verify(envelope, audience=AUDIENCE)  # the signature is fine; the claim is not
    with pytest.raises(InvalidValue) as caught:
        open_body(envelope)
    assert caught.value.field == "node_id"


def test_the_manifest_digest_changes_with_any_capability() -> None:
    assert MANIFEST.digest() != attrs.evolve(MANIFEST, vram_mb=24_577).digest()
    assert MANIFEST.digest() == CapabilityManifest.from_body(MANIFEST.to_body()).digest()


# --- replay guard -------------------------------------------------------------------------


@given(
    nonce=nonces, skew=st.integers(-2 * DEFAULT_FRESHNESS_WINDOW_S, 2 * DEFAULT_FRESHNESS_WINDOW_S)
)
@settings(max_examples=100)
def test_the_guard_accepts_fresh_envelopes_once_and_rejects_stale_ones(
    nonce: bytes, skew: int
) -> None:
    guard = ReplayGuard()
    envelope = _seal(nonce=nonce, issued_at=T0 + skew)
    if abs(skew) > DEFAULT_FRESHNESS_WINDOW_S:
        with pytest.raises(ReplayRejected):
            guard.accept(envelope, now=T0)
        return
    guard.accept(envelope, now=T0)
    for later in (T0, T0 + 1, T0 + DEFAULT_FRESHNESS_WINDOW_S):
        with pytest.raises(ReplayRejected):
            guard.accept(envelope, now=later)


@given(steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 400)), max_size=40))
@settings(max_examples=100)
def test_no_signer_and_nonce_pair_is_ever_accepted_twice(
    steps: list[tuple[int, int]],
) -> None:
    guard = ReplayGuard(window_s=300)
    now = T0
    accepted: set[str] = set()
    envelopes = [_seal(nonce=bytes([i]) * 16, issued_at=T0 + 200 * i) for i in range(4)]
    for which, advance in steps:
        now += advance
        envelope = envelopes[which]
        try:
            guard.accept(envelope, now)
        except ReplayRejected:
            continue
        assert envelope.nonce not in accepted
        assert abs(envelope.issued_at - now) <= 300
        accepted.add(envelope.nonce)


@pytest.mark.parametrize(
    ("skew", "fresh"), [(-301, False), (-300, True), (0, True), (300, True), (301, False)]
)
def test_the_freshness_window_is_plus_or_minus_300_seconds_inclusive(
    skew: int, fresh: bool
) -> None:
    guard = ReplayGuard()
    envelope = _seal(issued_at=T0 + skew)
    if fresh:
        guard.accept(envelope, now=T0)
    else:
        with pytest.raises(ReplayRejected):
            guard.accept(envelope, now=T0)


def test_the_same_nonce_from_different_signers_is_not_a_replay() -> None:
    guard = ReplayGuard()
    guard.accept(_seal(nonce=b"\x05" * 16), T0)
    guard.accept(seal(OTHER, EnvelopeKind.TASK_PROOF, {"x": 1}, b"\x05" * 16, T0,
                      audience=AUDIENCE), T0)


def test_the_guard_forgets_nonces_that_could_no_longer_pass_so_memory_stays_bounded() -> None:
    guard = ReplayGuard(window_s=10)
    for i in range(1_000):
        guard.accept(_seal(nonce=i.to_bytes(16, "big"), issued_at=T0 + i), now=T0 + i)
        assert len(guard) <= 21
    old = _seal(nonce=(0).to_bytes(16, "big"), issued_at=T0)
    with pytest.raises(ReplayRejected):
        guard.accept(old, now=T0 + 999)


def test_a_clock_stepping_back_does_not_revive_forgotten_nonces() -> None:
    guard = ReplayGuard(window_s=10)
    envelope = _seal(issued_at=T0)
    guard.accept(envelope, now=T0)
    guard.accept(_seal(nonce=b"\x09" * 16, issued_at=T0 + 100), now=T0 + 100)  # prunes
    with pytest.raises(ReplayRejected):
        guard.accept(envelope, now=T0)


def test_a_full_guard_fails_closed_as_a_rate_limit_saying_when_to_retry() -> None:
    guard = ReplayGuard(window_s=10, max_entries=2)
    guard.accept(_seal(nonce=b"\x01" * 16, issued_at=T0 - 4), T0)
    guard.accept(_seal(nonce=b"\x02" * 16), T0)
    with pytest.raises(ReplayGuardFull) as caught:
        guard.accept(_seal(nonce=b"\x03" * 16), T0)
    assert isinstance(caught.value, RateLimited)
    assert not isinstance(caught.value, ReplayRejected)
    assert caught.value.retry_after_s == 7  # the nonce issued at T0 - 4 is gone at T0 + 7
    assert "replay guard is full; retry after 7 s" in caught.value.message
    with pytest.raises(ReplayGuardFull):
        guard.accept(_seal(nonce=b"\x03" * 16, issued_at=T0 + 6), T0 + 6)
    guard.accept(_seal(nonce=b"\x03" * 16, issued_at=T0 + 7), T0 + 7)


def test_one_signer_cannot_fill_the_guard_for_the_others() -> None:
    guard = ReplayGuard(max_entries=6, max_per_signer=3)
    for i in range(3):
        guard.accept(_seal(nonce=bytes([i + 1]) * 16), T0)
    with pytest.raises(ReplayGuardFull) as caught:
        guard.accept(_seal(nonce=b"\x09" * 16), T0)
    assert "more than 3 envelopes by this key" in caught.value.message
    assert caught.value.retry_after_s == DEFAULT_FRESHNESS_WINDOW_S + 1
    for i in range(3):
        guard.accept(seal(OTHER, EnvelopeKind.TASK_PROOF, {"x": 1}, bytes([i + 1]) * 16, T0,
                          audience=AUDIENCE), T0)
    assert (guard.held_by(NODE.public_key_hex), guard.held_by(OTHER.public_key_hex)) == (3, 3)


def test_a_signer_regains_its_places_as_its_nonces_expire() -> None:
    guard = ReplayGuard(window_s=10, max_per_signer=2)
    guard.accept(_seal(nonce=b"\x01" * 16, issued_at=T0), T0)
    guard.accept(_seal(nonce=b"\x02" * 16, issued_at=T0), T0)
    guard.accept(_seal(nonce=b"\x03" * 16, issued_at=T0 + 11), T0 + 11)
    assert guard.held_by(NODE.public_key_hex) == 1


def test_a_stranger_or_a_key_other_than_the_registered_one_takes_no_nonce() -> None:
    guard = ReplayGuard(max_entries=1)
    envelope = _seal()
    for registered in (None, OTHER.public_key_hex):
        with pytest.raises(SignatureInvalid) as caught:
            guard.accept_registered(envelope, registered, T0)
        assert "no registered node" in caught.value.message
    assert len(guard) == 0
    guard.accept_registered(envelope, NODE.public_key_hex, T0)
    assert len(guard) == 1


@given(
    steps=st.lists(
        st.tuples(st.sampled_from([NODE, OTHER]), st.integers(0, 255), st.integers(0, 30)),
        max_size=60,
    ),
    per_signer=st.integers(1, 5),
)
@settings(max_examples=100)
def test_the_guard_never_holds_more_than_its_bounds(
    steps: list[tuple[Identity, int, int]], per_signer: int
) -> None:
    guard = ReplayGuard(window_s=20, max_entries=7, max_per_signer=per_signer)
    now = T0
    for who, nonce, advance in steps:
        now += advance
        envelope = seal(who, EnvelopeKind.TASK_PROOF, {"x": 1}, bytes([nonce]) * 16, now,
                        audience=AUDIENCE)
        with contextlib.suppress(ReplayRejected, ReplayGuardFull):
            guard.accept(envelope, now)
        assert len(guard) <= 7
        assert guard.held_by(NODE.public_key_hex) <= per_signer
        assert guard.held_by(OTHER.public_key_hex) <= per_signer
        held = guard.held_by(NODE.public_key_hex) + guard.held_by(OTHER.public_key_hex)
        assert held == len(guard)


@given(
    steps=st.lists(
        st.tuples(st.sampled_from([NODE, OTHER]), st.integers(-20, 20), st.integers(0, 15)),
        max_size=40,
    ),
    max_entries=st.integers(1, 6),
    per_signer=st.integers(1, 4),
)
@settings(max_examples=150, deadline=None)
def test_a_fresh_envelope_without_room_is_told_when_to_retry_and_a_replay_stays_a_replay(
    steps: list[tuple[Identity, int, int]], max_entries: int, per_signer: int
) -> None:
    window = 20
    guard = ReplayGuard(window_s=window, max_entries=max_entries, max_per_signer=per_signer)
    accepted: list[Envelope] = []
    now = T0
    for i, (who, skew, advance) in enumerate(steps):
        now += advance
        for old in accepted:  # stale or still held: a replay, full guard or not
            with pytest.raises(ReplayRejected):
                guard.accept(old, now)
        fresh = seal(who, EnvelopeKind.HEARTBEAT, {}, i.to_bytes(16, "big"), now + skew,
                     audience=AUDIENCE)
        before = copy.deepcopy(guard)
        try:
            guard.accept(fresh, now)
        except ReplayRejected:
            raise AssertionError("a fresh envelope was called a replay") from None
        except ReplayGuardFull as full:
            assert 1 <= full.retry_after_s <= 2 * window + 1
            later = now + full.retry_after_s
            before.accept(seal(who, EnvelopeKind.HEARTBEAT, {}, b"\xff" * 16, later,
                               audience=AUDIENCE), later)
        else:
            accepted.append(fresh)


@pytest.mark.parametrize(
    ("kwargs", "field"), [
        ({"window_s": 0}, "window_s"),
        ({"max_entries": 1.0}, "max_entries"),
        ({"max_per_signer": 0}, "max_per_signer"),
    ],
)
def test_guard_settings_are_validated(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        ReplayGuard(**kwargs)
    assert caught.value.field == field


def _verdict(accept: Any, *args: Any) -> str:
    try:
        accept(*args)
    except (ReplayRejected, ReplayGuardFull) as exc:
        return f"{exc.code}: {exc}"
    return "accepted"


@settings(max_examples=50, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([NODE, OTHER]),
            st.integers(0, 3),  # nonce
            st.integers(-40, 40),  # issued_at - T0
            st.integers(-40, 40),  # now - T0
        ),
        max_size=25,
    )
)
def test_accepting_an_envelope_or_its_parts_gives_the_same_verdicts(
    steps: list[tuple[Identity, int, int, int]],
) -> None:
    whole, parts = ReplayGuard(window_s=10, max_entries=6), ReplayGuard(window_s=10, max_entries=6)
    for who, nonce, issued, now in steps:
        envelope = seal(who, EnvelopeKind.HEARTBEAT, {}, bytes([nonce]) * 16, T0 + issued,
                        audience=AUDIENCE)
        fields = (envelope.signer, envelope.nonce, envelope.issued_at)

        assert _verdict(whole.accept, envelope, T0 + now) == _verdict(
            parts.accept_parts, *fields, T0 + now
        )
        assert len(whole) == len(parts)


class _Ledger:
    """A shared nonce ledger that another coordinator has written ``used`` into."""

    def __init__(self, used: set[tuple[str, str]]) -> None:
        self.held = set(used)
        self.round_trips = 0

    def claim(self, signer: str, nonce: str, expires_at: int) -> bool:
        return (signer, nonce) in self.claim_many([(signer, nonce, expires_at)])

    def claim_many(self, claims: Any) -> set[tuple[str, str]]:
        self.round_trips += 1
        new = {(s, n) for s, n, _ in claims} - self.held
        self.held |= new
        return new


@settings(max_examples=50, deadline=None)
@given(
    batch=st.lists(
        st.tuples(st.sampled_from([NODE, OTHER]), st.integers(0, 5), st.integers(-40, 40)),
        max_size=25,
    ),
    used_elsewhere=st.sets(st.tuples(st.sampled_from([NODE, OTHER]), st.integers(0, 5))),
)
# A nonce another coordinator used takes its place in the guard one by one as in a batch: the
# seventh envelope finds the guard full either way (one by one it was once accepted).
@example(batch=[(NODE, n, 0) for n in range(6)] + [(OTHER, 0, 0)], used_elsewhere={(NODE, 0)})
def test_accepting_a_batch_gives_the_verdicts_of_accepting_each_in_one_ledger_round_trip(
    batch: list[tuple[Identity, int, int]], used_elsewhere: set[tuple[Identity, int]]
) -> None:
    used = {(who.public_key_hex, (bytes([n]) * 16).hex()) for who, n in used_elsewhere}
    one_ledger, many_ledger = _Ledger(used), _Ledger(used)
    one = ReplayGuard(window_s=10, max_entries=6, ledger=one_ledger)
    many = ReplayGuard(window_s=10, max_entries=6, ledger=many_ledger)
    parts = [(who.public_key_hex, (bytes([n]) * 16).hex(), T0 + at) for who, n, at in batch]

    expected = [_verdict(one.accept_parts, *p, T0) for p in parts]
    verdicts = many.accept_many(parts, T0)

    assert [f"{v.code}: {v}" if v else "accepted" for v in verdicts] == expected
    assert many_ledger.round_trips == 1
    assert many_ledger.held == one_ledger.held
