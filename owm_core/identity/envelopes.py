"""Signed envelopes: the canonical, replay-protected messages nodes and maintainers send.

This module owns the wire form of every signed statement in the control plane: capability
manifests, heartbeats, task proofs, task rejections, maintainer acknowledgements and a node's
payout queries and invoice hand-ins, and a submitter's task submissions and balance requests
(SRS-SEC-01, SRS-SEC-03, SRS-SEC-14, SRS-NODE-07,
SRS-LN-04), their typed bodies, and the replay guard
that refuses stale or repeated ones.

Canonical encoding (version 1)
------------------------------
A value is canonical when it is built only from ``dict`` (``str`` keys), ``list``, ``str``,
``int`` (within signed 64 bits, so every JSON reader keeps it exact), ``bool`` and ``None``.
**Floats are refused everywhere** — measurements are integers in named units (``vram_mb``,
``execution_ms``). Its bytes are::

    json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
               allow_nan=False).encode("utf-8")

that is, UTF-8 JSON with keys sorted by code point, no whitespace, strings compared byte for
byte (no Unicode normalisation). Nesting is limited to 32 levels.

Envelope
--------
An envelope has six fields: ``kind`` (an :class:`EnvelopeKind` value), ``signer`` (public key,
64 hex), ``nonce`` (16 caller-supplied random bytes as 32 hex), ``issued_at`` (int POSIX
seconds, caller-supplied), ``body`` (a canonical dict) and ``signature`` (128 hex). The signed
message (version 2) is, with domain separation so that no envelope signature is valid for
anything else, and bound to its *audience* — the public key (64 lower-case hex) of the
coordinator the envelope is addressed to, the key nodes pin as ``[coordinator] public_key``::

    b"owm/envelope/v2\\x00" + kind.encode() + b"\\x00" + audience.encode() + b"\\x00" + canonical(
        {"body": body, "issued_at": issued_at, "kind": kind, "nonce": nonce, "signer": signer})

The audience is not a field: like a TLS channel binding it is implicit in the signature, so an
envelope signed for one coordinator (a testnet's) does not verify at another (mainnet's),
however fresh (SRS-SEC-03). :func:`verify` is strict. Only an envelope re-verified from
storage or a log, accepted before the binding existed, may pass ``recorded=True`` and then
also carry the old unbound version 1 signature over
``b"owm/envelope/v1\\x00" + kind.encode() + b"\\x00" + canonical(...)``.

:func:`to_bytes` is the canonical encoding of all six fields. :func:`from_bytes` accepts any
JSON object with exactly those six fields (no duplicate keys, no floats, no NaN, at most
:data:`MAX_ENVELOPE_BYTES`) and raises :class:`InvalidValue` naming the offending field;
the signature covers the canonical re-encoding, so whitespace or key order on the wire cannot
change what was signed. :func:`verify` costs one canonical dump and one Ed25519 verification.

Replay protection
-----------------
:class:`ReplayGuard` accepts an envelope only if ``issued_at`` lies within ±``window_s``
(default :data:`DEFAULT_FRESHNESS_WINDOW_S` = 300 s) of the caller's ``now`` and its
``(signer, nonce)`` has not been accepted before; nonces are forgotten once their envelopes
could no longer pass the freshness check, so memory holds at most the envelopes accepted in
the last 2 × ``window_s`` seconds (and never more than ``max_entries``, of which one signer
holds at most ``max_per_signer``). :meth:`ReplayGuard.accept_registered` takes a nonce only
from a registered key, so strangers cannot fill the guard (SRS-SEC-03). A stale, future-dated
or repeated envelope is :class:`~owm_core.errors.ReplayRejected`; a fresh one that finds no
room (the guard, or its signer's share, full) is :class:`~owm_core.errors.ReplayGuardFull`,
a rate limit with the seconds until the guard forgets a nonce: an honest node retries then.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import heapq
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, Self, cast

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, ReplayGuardFull, ReplayRejected, SignatureInvalid
from owm_core.identity.keys import (
    Identity,
    node_id_from_public_key,
    parse_node_id,
    parse_public_key,
    parse_signature,
    verify_signature,
)
from owm_core.json_objects import exact_fields, unique_keys
from owm_core.nodes.tiers import Tier
from owm_core.payments.invoices import PAYOUT_ID

ENVELOPE_DOMAIN = b"owm/envelope/v2\x00"
UNBOUND_ENVELOPE_DOMAIN = b"owm/envelope/v1\x00"
NONCE_BYTES = 16
MAX_DEPTH = 32
MAX_ENVELOPE_BYTES = 64 * 1024
INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
DEFAULT_FRESHNESS_WINDOW_S = 300
ENVELOPE_FIELDS = frozenset({"kind", "signer", "nonce", "issued_at", "body", "signature"})

_NONCE_RE = re.compile(r"[0-9a-f]{32}")


class EnvelopeKind(enum.Enum):
    """What an envelope states; part of the signed message (domain separation)."""

    CAPABILITY_MANIFEST = "capability_manifest"
    HEARTBEAT = "heartbeat"
    TASK_PROOF = "task_proof"
    MAINTAINER_ACK = "maintainer_ack"
    TASK_REJECTION = "task_rejection"
    TASK_COMMITMENT = "task_commitment"
    PAYOUT_QUERY = "payout_query"
    PAYOUT_INVOICE = "payout_invoice"
    TASK_SUBMISSION = "task_submission"
    BALANCE_REQUEST = "balance_request"
    OUTPUT_REQUEST = "output_request"
    GOVERNANCE_STATEMENT = "governance_statement"
    SLASHING_REVERSAL = "slashing_reversal"


# --- canonical encoding -------------------------------------------------------------------


def check_canonical(value: object, field: str = "body", _depth: int = 0) -> None:
    """Raise :class:`InvalidValue` (naming ``field`` and the path inside it) unless ``value``
    is canonical: dict/list/str/int(64-bit)/bool/None only, no floats, string keys."""
    if _depth > MAX_DEPTH:
        raise InvalidValue(field, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidValue(field, "integer outside signed 64 bits")
        return
    if isinstance(value, float):
        raise InvalidValue(field, "floats are not allowed; use integers in named units")
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_canonical(item, f"{field}[{i}]", _depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue(field, f"keys must be text, got {type(key).__name__}")
            check_canonical(item, f"{field}.{key}", _depth + 1)
        return
    raise InvalidValue(field, f"{type(value).__name__} is not allowed in a canonical value")


def _dump(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def canonical_bytes(value: object, field: str = "value") -> bytes:
    """The canonical encoding (see module docstring) of ``value``, after checking it."""
    check_canonical(value, field)
    try:
        return _dump(value)
    except UnicodeEncodeError:
        raise InvalidValue(field, "text is not valid Unicode (lone surrogate)") from None


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data`` (evidence hashes, manifest digests, output hashes)."""
    return hashlib.sha256(data).hexdigest()


# --- envelope -----------------------------------------------------------------------------


def _canonical_body(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidValue(attribute.name, f"must be an object, got {type(value).__name__}")
    check_canonical(value, attribute.name)


def _public_key(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_public_key(value, attribute.name)


def _signature(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_signature(value, attribute.name)


def _to_kind(value: object) -> object:
    return fields.to_enum(EnvelopeKind, "kind", value)


@attrs.frozen
class Envelope:
    """A signed statement; build with :func:`seal`, check with :func:`verify`.

    ``body`` is a plain dict so that it survives any transport unchanged; typed views come from
    :func:`open_body`. Constructing an envelope checks shapes only, never the signature.
    """

    kind: EnvelopeKind = attrs.field(converter=_to_kind, validator=fields.instance_of(EnvelopeKind))
    signer: str = attrs.field(validator=_public_key)
    nonce: str = attrs.field(validator=fields.matches(_NONCE_RE, "32 lower-case hex characters"))
    issued_at: int = attrs.field(validator=fields.integer(minimum=0, maximum=INT_MAX))
    body: dict[str, Any] = attrs.field(validator=_canonical_body, hash=False)
    signature: str = attrs.field(validator=_signature)

    def unsigned(self) -> dict[str, Any]:
        """The five signed fields as a plain dict (everything except the signature)."""
        return {
            "body": self.body,
            "issued_at": self.issued_at,
            "kind": self.kind.value,
            "nonce": self.nonce,
            "signer": self.signer,
        }

    @property
    def signer_node_id(self) -> str:
        """The node id derived from the signer's key."""
        return node_id_from_public_key(self.signer)


@functools.lru_cache(maxsize=256)
def signed_prefix(kind: EnvelopeKind, audience: str) -> bytes:
    """What the signed message of a ``kind`` envelope for ``audience`` starts with; the
    canonical unsigned fields follow (see module docstring). Cached: a coordinator has one
    audience, and checks every heartbeat (SRS-PERF-04). ``InvalidValue`` names ``audience``
    unless it is a public key."""
    parse_public_key(audience, "audience")
    kind_part = kind.value.encode("ascii") + b"\x00"
    return ENVELOPE_DOMAIN + kind_part + audience.encode("ascii") + b"\x00"


class TypedBody(Protocol):
    """A typed envelope body (e.g. :class:`Heartbeat`) that knows its kind."""

    KIND: ClassVar[EnvelopeKind]

    def to_body(self) -> dict[str, Any]:
        """The body as a canonical dict."""
        ...


def seal(
    identity: Identity,
    kind: EnvelopeKind,
    body: Mapping[str, Any] | TypedBody,
    nonce: bytes | str,
    issued_at: int,
    *,
    audience: str,
) -> Envelope:
    """Sign ``body`` as an envelope of ``kind`` issued by ``identity`` at ``issued_at``, for
    the coordinator whose public key is ``audience`` (SRS-SEC-03).

    ``nonce`` is 16 random bytes (or their 32-char hex) drawn by the caller's adapter; a typed
    body must be of ``kind``. Why: the core draws no randomness and reads no clock.
    """
    if not isinstance(kind, EnvelopeKind):
        raise InvalidValue("kind", f"must be an EnvelopeKind, got {type(kind).__name__}")
    if not isinstance(body, Mapping):
        if getattr(body, "KIND", None) is not kind:
            raise InvalidValue("body", f"is not a {kind.value} body")
        body = body.to_body()
    if isinstance(nonce, bytes):
        if len(nonce) != NONCE_BYTES:
            raise InvalidValue("nonce", f"must be {NONCE_BYTES} bytes, got {len(nonce)}")
        nonce = nonce.hex()
    draft = Envelope(
        kind=kind,
        signer=identity.public_key_hex,
        nonce=nonce,
        issued_at=issued_at,
        body=dict(body),
        signature="0" * 128,
    )
    try:
        message = signed_prefix(kind, audience) + _dump(draft.unsigned())
    except UnicodeEncodeError:
        raise InvalidValue("body", "text is not valid Unicode (lone surrogate)") from None
    return attrs.evolve(draft, signature=identity.sign(message).hex())


def verify(envelope: Envelope, *, audience: str, recorded: bool = False) -> None:
    """Raise :class:`SignatureInvalid` unless ``envelope`` is signed by its ``signer`` for the
    coordinator whose public key is ``audience`` (SRS-SEC-03).

    ``recorded=True`` also accepts the old unbound (version 1) signature: only for an envelope
    re-verified from storage or a log that was accepted before envelopes named their audience;
    anything received is verified strictly. Lean on purpose (one canonical dump, one Ed25519
    verification): the coordinator checks every heartbeat (SRS-PERF-04).
    """
    prefix = signed_prefix(envelope.kind, audience)
    try:
        unsigned = _dump(envelope.unsigned())
    except (UnicodeEncodeError, TypeError, ValueError):
        raise SignatureInvalid("envelope body cannot be encoded canonically") from None
    signature = bytes.fromhex(envelope.signature)
    try:
        verify_signature(envelope.signer, prefix + unsigned, signature)
    except SignatureInvalid:
        if not recorded:
            raise
        unbound = UNBOUND_ENVELOPE_DOMAIN + envelope.kind.value.encode("ascii") + b"\x00"
        verify_signature(envelope.signer, unbound + unsigned, signature)


def to_bytes(envelope: Envelope) -> bytes:
    """The canonical encoding of all six fields of ``envelope``."""
    wire = envelope.unsigned()
    wire["signature"] = envelope.signature
    return _dump(wire)


def _no_float(text: str) -> Any:
    raise InvalidValue("envelope", f"floats are not allowed ({text})")


def parse_canonical_json(data: bytes, field: str = "envelope") -> Any:
    """Parse JSON bytes strictly: UTF-8, no duplicate keys, no floats, NaN or Infinity."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=unique_keys("envelope"),
            parse_float=_no_float,
            parse_constant=_no_float,
        )
    except InvalidValue as exc:
        raise InvalidValue(field, exc.reason) from None
    except UnicodeDecodeError:
        raise InvalidValue(field, "is not UTF-8") from None
    except RecursionError:
        raise InvalidValue(field, "nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise InvalidValue(field, f"is not valid JSON: {exc}") from None


def from_bytes(data: bytes) -> Envelope:
    """Parse an envelope's wire bytes; raise :class:`InvalidValue` naming the bad field.

    Does not verify the signature: call :func:`verify` (and a :class:`ReplayGuard`) next.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidValue("envelope", f"must be bytes, got {type(data).__name__}")
    if len(data) > MAX_ENVELOPE_BYTES:
        raise InvalidValue("envelope", f"longer than {MAX_ENVELOPE_BYTES} bytes")
    wire = parse_canonical_json(bytes(data))
    if not isinstance(wire, dict):
        raise InvalidValue("envelope", "must be a JSON object")
    missing = sorted(ENVELOPE_FIELDS - wire.keys())
    if missing:
        raise InvalidValue(missing[0], "is missing")
    unknown = sorted(wire.keys() - ENVELOPE_FIELDS)
    if unknown:
        raise InvalidValue(unknown[0], "is not an envelope field")
    return Envelope(**wire)  # exactly the envelope's fields, each checked by its validator


# --- typed bodies -------------------------------------------------------------------------

_SLUG_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_TASK_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _node_id(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    parse_node_id(value, attribute.name)


def plain_fields(value: Any, *, without: tuple[str, ...] = ()) -> dict[str, Any]:
    """Every field of the ``attrs`` ``value`` (but ``without``) by name, sorted, enums as
    their value: what a signed body or a signed log entry is made of."""
    names = sorted(a.name for a in attrs.fields(type(value)) if a.name not in without)
    raw = {name: getattr(value, name) for name in names}
    return {k: v.value if isinstance(v, enum.Enum) else v for k, v in raw.items()}


class BodyFields:
    """Base of the ``attrs`` values an envelope carries: the body is every field, by name
    (enums as their value; canonical JSON sorts the keys), and reading one back refuses a
    missing or unknown field."""

    def to_body(self) -> dict[str, Any]:
        """The value as a canonical dict."""
        return plain_fields(self)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Read the value from a body dict; unknown or missing fields are refused."""
        names = [a.name for a in attrs.fields(cast(Any, cls))]
        stranger = f"is not a field of {cls.__name__}"
        return cls(**exact_fields(body, names, stranger, container="body"))


_MB = fields.integer(minimum=0, maximum=2**40)


def _to_tier(value: object) -> object:
    return fields.to_enum(Tier, "tier", value)


@attrs.frozen
class CapabilityManifest(BodyFields):
    """What a node offers (SRS-NODE-03): its tier and hardware, integers in named units."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.CAPABILITY_MANIFEST

    tier: Tier = attrs.field(converter=_to_tier, validator=fields.instance_of(Tier))
    vram_mb: int = attrs.field(validator=_MB)
    ram_mb: int = attrs.field(validator=fields.integer(minimum=1, maximum=2**40))
    bandwidth_mbps: int = attrs.field(validator=fields.integer(minimum=0, maximum=10**7))
    gpu_vendor: str = attrs.field(validator=fields.matches(_SLUG_RE, "a lower-case vendor name"))
    gpu_count: int = attrs.field(validator=fields.integer(minimum=0, maximum=1024))

    def digest(self) -> str:
        """SHA-256 hex of the canonical body; heartbeats refer to the manifest by it."""
        return sha256_hex(_dump(self.to_body()))


@attrs.frozen
class Heartbeat(BodyFields):
    """A node's periodic liveness statement (SRS-PERF-04); ``seq`` increases per node."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.HEARTBEAT

    node_id: str = attrs.field(validator=_node_id)
    seq: int = attrs.field(validator=fields.integer(minimum=0, maximum=INT_MAX))
    manifest_digest: str = attrs.field(validator=fields.hex_digest(32))


@attrs.frozen
class TaskProof(BodyFields):
    """A node's claim that it ran ``task_id`` and produced output hashing to ``output_hash``."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.TASK_PROOF

    task_id: str = attrs.field(validator=fields.matches(_TASK_ID_RE, "a task id ([A-Za-z0-9._:-])"))
    output_hash: str = attrs.field(validator=fields.hex_digest(32))
    execution_ms: int = attrs.field(validator=fields.integer(minimum=0, maximum=INT_MAX))
    attestation: dict[str, Any] = attrs.field(factory=dict, validator=_canonical_body, hash=False)


class AckVerdict(enum.Enum):
    """A maintainer's answer to a slashing case (SRS-SEC-14)."""

    SLASH = "slash"
    DISMISS = "dismiss"


def _to_verdict(value: object) -> object:
    return fields.to_enum(AckVerdict, "verdict", value)


@attrs.frozen
class MaintainerAcknowledgement(BodyFields):
    """A maintainer's signed verdict on the evidence against a node (SRS-SEC-14, SRS-STAKE-04).

    ``reason`` is a slashing reason code (see ``owm_core.stake.slashing.SlashingReason``); the
    slashing policy refuses codes it does not know.
    """

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.MAINTAINER_ACK

    node_id: str = attrs.field(validator=_node_id)
    evidence_hash: str = attrs.field(validator=fields.hex_digest(32))
    reason: str = attrs.field(validator=fields.matches(_REASON_RE, "a reason code ([a-z0-9_])"))
    verdict: AckVerdict = attrs.field(
        converter=_to_verdict, validator=fields.instance_of(AckVerdict)
    )


@attrs.frozen
class SlashingReversal(BodyFields):
    """A maintainer's signed statement that an appeal against slashing-log entry ``log_index``
    (about ``node_id``) is upheld and the slashing is to be reversed (docs/slashing.md,
    "Appeals"; SRS-STAKE-07, SRS-SEC-11). Two such statements from distinct configured
    maintainers, neither of whom acknowledged the slashing, reverse it
    (``owm_core.stake.reversals``)."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.SLASHING_REVERSAL

    log_index: int = attrs.field(validator=fields.integer(minimum=0, maximum=INT_MAX))
    node_id: str = attrs.field(validator=_node_id)


MAX_REJECTION_FIELD_CHARS = 200
MAX_REJECTION_REASON_CHARS = 1_000


@attrs.frozen
class TaskRejection(BodyFields):
    """A node's refusal of an assigned task whose input failed validation (SRS-NODE-07).

    ``field`` names the offending field (as :class:`InvalidValue` does, e.g. ``input.prompt``)
    and ``reason`` says what is wrong with it; the coordinator records both and reassigns the
    task at once to another node.
    """

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.TASK_REJECTION

    task_id: str = attrs.field(validator=fields.matches(_TASK_ID_RE, "a task id ([A-Za-z0-9._:-])"))
    field: str = attrs.field(validator=fields.text(max_len=MAX_REJECTION_FIELD_CHARS))
    reason: str = attrs.field(validator=fields.text(max_len=MAX_REJECTION_REASON_CHARS))


@attrs.frozen
class TaskCommitment(BodyFields):
    """A node's sealed answer for one replica: the commitment digest only, never the output
    hash (commit–reveal, :mod:`owm_core.market.commit_reveal`; SRS-SEC-11)."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.TASK_COMMITMENT

    task_id: str = attrs.field(validator=fields.matches(_TASK_ID_RE, "a task id ([A-Za-z0-9._:-])"))
    commitment: str = attrs.field(validator=fields.hex_digest(32))


MAX_BOLT11_CHARS = 4_000


@attrs.frozen
class PayoutQuery(BodyFields):
    """A node asks which of its payouts await an invoice from its Lightning node (SRS-LN-04).

    Signed and replay-protected like every envelope; ``node_id`` must be the signer's.
    """

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.PAYOUT_QUERY

    node_id: str = attrs.field(validator=_node_id)


@attrs.frozen
class PayoutInvoice(BodyFields):
    """A node hands in the BOLT11 invoice its own Lightning node issued for one pending payout
    (``payment_id`` from the coordinator's list; SRS-LN-04)."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.PAYOUT_INVOICE

    payment_id: str = attrs.field(validator=fields.matches(PAYOUT_ID, "32 lower-case hex"))
    bolt11: str = attrs.field(
        validator=fields.text(max_len=MAX_BOLT11_CHARS, pattern=r"ln[0-9a-z]+")
    )


_SHA256_HEX_RE = re.compile(r"[0-9a-f]{64}")
MAX_BALANCE_REQUEST_MSAT = 10**15
"""The most one balance request may ask an invoice for (10 000 BTC: far above any cap)."""


@attrs.frozen
class TaskSubmission(BodyFields):
    """A submitter's signature over one task it pays for (funded work only, SRS-LN-04).

    ``request_sha256`` is :func:`owm_core.market.funding.submission_digest` of the task's
    request and input, so the signature covers every field the coordinator stores.
    """

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.TASK_SUBMISSION

    task_id: str = attrs.field(validator=fields.matches(_TASK_ID_RE, "a task id ([A-Za-z0-9._:-])"))
    request_sha256: str = attrs.field(validator=fields.matches(_SHA256_HEX_RE, "64 hex"))


@attrs.frozen
class BalanceRequest(BodyFields):
    """A submitter asks for its prepaid balance and, with ``amount_msat > 0``, for an invoice
    that tops it up by that amount once paid."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.BALANCE_REQUEST

    amount_msat: int = attrs.field(validator=fields.integer(0, MAX_BALANCE_REQUEST_MSAT))


@attrs.frozen
class OutputRequest(BodyFields):
    """A submitter asks for the verified output of a task it paid for (SRS-SEC-02): only the
    key that funded ``task_id`` may read it, sealed to that key."""

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.OUTPUT_REQUEST

    task_id: str = attrs.field(validator=fields.matches(_TASK_ID_RE, "a task id ([A-Za-z0-9._:-])"))


_ACTION_RE = re.compile(r"[a-z][a-z_]{0,31}")
_PROPOSAL_ID_RE = re.compile(r"(|[A-Za-z0-9_.:-]{1,128})")


@attrs.frozen
class GovernanceStatement(BodyFields):
    """A signed governance action (SRS-GOV-01..06): who does ``action`` to which proposal.

    ``action`` names a :class:`owm_core.coordination.governance.GovernanceAction` value,
    ``proposal_id`` is empty for a new proposal, and ``args`` holds the action's own fields
    (a title, a comment, a new deadline…), checked by the rule that applies the action. The
    signature is the role's credential: the coordinator appends every accepted statement,
    verbatim, to its governance log.

    ``coordinator`` is the public key of the coordinator the statement is addressed to: the
    log is public and maintainers often hold the same key on several networks, so without it
    a statement read from a testnet's log could be replayed, while fresh, at mainnet's
    coordinator (SRS-SEC-03); a coordinator takes only statements addressed to it.
    """

    KIND: ClassVar[EnvelopeKind] = EnvelopeKind.GOVERNANCE_STATEMENT

    action: str = attrs.field(validator=fields.matches(_ACTION_RE, "an action name ([a-z_])"))
    proposal_id: str = attrs.field(
        validator=fields.matches(_PROPOSAL_ID_RE, "a proposal id ([A-Za-z0-9_.:-]) or empty")
    )
    args: dict[str, Any] = attrs.field(validator=_canonical_body, hash=False)
    coordinator: str = attrs.field(validator=fields.hex_digest(32))


Body = (
    CapabilityManifest | Heartbeat | TaskProof | MaintainerAcknowledgement | TaskRejection
    | TaskCommitment | PayoutQuery | PayoutInvoice | TaskSubmission | BalanceRequest
    | OutputRequest | GovernanceStatement | SlashingReversal
)

_BODY_TYPES: dict[EnvelopeKind, Any] = {
    EnvelopeKind.CAPABILITY_MANIFEST: CapabilityManifest,
    EnvelopeKind.HEARTBEAT: Heartbeat,
    EnvelopeKind.TASK_PROOF: TaskProof,
    EnvelopeKind.MAINTAINER_ACK: MaintainerAcknowledgement,
    EnvelopeKind.TASK_REJECTION: TaskRejection,
    EnvelopeKind.TASK_COMMITMENT: TaskCommitment,
    EnvelopeKind.PAYOUT_QUERY: PayoutQuery,
    EnvelopeKind.PAYOUT_INVOICE: PayoutInvoice,
    EnvelopeKind.TASK_SUBMISSION: TaskSubmission,
    EnvelopeKind.BALANCE_REQUEST: BalanceRequest,
    EnvelopeKind.OUTPUT_REQUEST: OutputRequest,
    EnvelopeKind.GOVERNANCE_STATEMENT: GovernanceStatement,
    EnvelopeKind.SLASHING_REVERSAL: SlashingReversal,
}


def open_body(envelope: Envelope) -> Body:
    """The typed body of ``envelope``, validated; a heartbeat must name its signer's node id.

    Does not verify the signature (call :func:`verify` first).
    """
    body: Body = _BODY_TYPES[envelope.kind].from_body(envelope.body)
    if isinstance(body, Heartbeat) and body.node_id != envelope.signer_node_id:
        raise InvalidValue("node_id", "is not the node id of the envelope's signer")
    return body


# --- replay protection --------------------------------------------------------------------


class NonceLedger(Protocol):
    """Nonces seen by every coordinator on one database (SRS-COORD-05, SRS-SEC-03): the
    shape of :class:`owm_core.ports.repositories.NonceRepository` a guard needs."""

    def claim(self, signer: str, nonce: str, expires_at: int) -> bool:
        """Record ``(signer, nonce)`` until ``expires_at``; False if it is recorded already."""
        ...

    def claim_many(self, claims: Sequence[tuple[str, str, int]]) -> set[tuple[str, str]]:
        """:meth:`claim` for every ``(signer, nonce, expires_at)`` at once (one round trip);
        the ``(signer, nonce)`` pairs that were new and are now recorded."""
        ...


@attrs.define
class ReplayGuard:
    """Refuses stale, future-dated and repeated envelopes (in memory; one per process).

    Call :meth:`accept` after :func:`verify`, and only for a registered signer
    (:meth:`accept_registered` checks that), so that neither forged envelopes nor strangers'
    can burn nonces or fill the guard (SRS-SEC-03). One signer holds at most
    ``max_per_signer`` of the ``max_entries`` places, so one registered key cannot lock the
    others out either. A fresh envelope refused only for want of room (the guard full, or its
    signer at its bound) is :class:`ReplayGuardFull`, not a replay: its ``retry_after_s`` says
    when the guard forgets the oldest nonce in the way, at least 1 s and at most
    2 × ``window_s`` + 1 s away. ``now`` should not go backwards; if it does, the guard keeps
    using the latest ``now`` it saw as the lower edge of the window, so forgotten nonces can
    never become acceptable again.

    With a ``ledger`` (several coordinators on one PostgreSQL database, SRS-COORD-05) a nonce
    that passes this process's checks must also be new to the ledger, which every coordinator
    shares: an envelope used at one coordinator is refused at all of them. The ledger keeps a
    nonce for twice the window, so coordinators whose clocks differ by less than a window
    never forget a nonce another one could still accept.
    """

    window_s: int = attrs.field(
        default=DEFAULT_FRESHNESS_WINDOW_S, validator=fields.integer(minimum=1)
    )
    max_entries: int = attrs.field(default=1_000_000, validator=fields.integer(minimum=1))
    max_per_signer: int = attrs.field(default=3_000, validator=fields.integer(minimum=1))
    ledger: NonceLedger | None = attrs.field(default=None, kw_only=True)
    _seen: dict[tuple[str, str], int] = attrs.field(init=False, factory=dict)
    #: Each signer's held nonces' ``issued_at``, a heap: its size is the signer's share, its
    #: head the nonce the guard forgets first.
    _per_signer: dict[str, list[int]] = attrs.field(init=False, factory=dict)
    _expiry: list[tuple[int, str, str]] = attrs.field(init=False, factory=list)
    _latest_now: int = attrs.field(init=False, default=0)

    def __len__(self) -> int:
        return len(self._seen)

    def held_by(self, signer: str) -> int:
        """How many nonces of ``signer`` the guard holds now."""
        return len(self._per_signer.get(signer, ()))

    def accept(self, envelope: Envelope, now: int) -> None:
        """Record ``envelope`` as seen, or raise :class:`ReplayRejected` if it is stale,
        future-dated beyond the window, or repeats a ``(signer, nonce)`` pair, and
        :class:`ReplayGuardFull` if it is none of these but the guard has no room for it."""
        self.accept_parts(envelope.signer, envelope.nonce, envelope.issued_at, now)

    def accept_registered(
        self, envelope: Envelope, registered_key: str | None, now: int
    ) -> None:
        """:meth:`accept` for a verified envelope whose signer must be ``registered_key``.

        ``registered_key`` is the public key the coordinator holds for the signer's node id
        (None: no such node). A stranger's envelope raises SignatureInvalid before its nonce is
        looked at, so no count of strangers can fill the guard (SRS-SEC-03).
        """
        if registered_key is None or registered_key != envelope.signer:
            raise SignatureInvalid("the signing key belongs to no registered node")
        self.accept(envelope, now)

    def accept_parts(self, signer: str, nonce: str, issued_at: int, now: int) -> None:
        """:meth:`accept` for an envelope already taken apart (the coordinator's heartbeat fast
        path, SRS-PERF-04): ``signer``, ``nonce`` and ``issued_at`` of a verified envelope."""
        (verdict,) = self.accept_many([(signer, nonce, issued_at)], now)
        if verdict is not None:
            raise verdict

    def accept_many(
        self, parts: Sequence[tuple[str, str, int]], now: int
    ) -> list[ReplayRejected | ReplayGuardFull | None]:
        """:meth:`accept_parts` for each ``(signer, nonce, issued_at)`` in ``parts``, with one
        ledger round trip for all of them (a batch of heartbeats, SRS-PERF-04, SRS-COORD-05).

        The verdict of each, in order: None when accepted, else the refusal; the same verdicts
        as accepting them one by one. A nonce that passes this process's checks is recorded
        here before the ledger is asked, so one the ledger already holds stays recorded when it
        is refused (it is used, so nothing could accept it anyway) and takes its place in the
        guard, one by one or in a batch alike.
        """
        self._advance(now)
        verdicts: list[ReplayRejected | ReplayGuardFull | None] = []
        for signer, nonce, issued_at in parts:
            try:
                self._check_local(signer, nonce, issued_at, now)
            except (ReplayRejected, ReplayGuardFull) as exc:
                verdicts.append(exc)
                continue
            self._record(signer, nonce, issued_at)
            verdicts.append(None)
        if self.ledger is None:
            return verdicts
        offered = [p for p, v in zip(parts, verdicts, strict=True) if v is None]
        claimed = self.ledger.claim_many(
            [(signer, nonce, issued_at + 2 * self.window_s) for signer, nonce, issued_at in offered]
        )
        return [
            ReplayRejected("envelope nonce was already used")
            if v is None and (p[0], p[1]) not in claimed
            else v
            for p, v in zip(parts, verdicts, strict=True)
        ]

    def _advance(self, now: int) -> None:
        if isinstance(now, bool) or not isinstance(now, int) or now < 0:
            raise InvalidValue("now", "must be a non-negative integer")
        self._latest_now = max(self._latest_now, now)
        self._forget_before(self._latest_now - self.window_s)

    def _check_local(self, signer: str, nonce: str, issued_at: int, now: int) -> None:
        oldest = self._latest_now - self.window_s
        if issued_at < oldest:
            raise ReplayRejected(f"envelope is stale (older than {self.window_s} s)")
        if issued_at > now + self.window_s:
            raise ReplayRejected(f"envelope is dated more than {self.window_s} s ahead")
        key = (signer, nonce)
        if key in self._seen:
            raise ReplayRejected("envelope nonce was already used")
        held = self._per_signer.get(signer, [])
        at_cap = len(held) >= self.max_per_signer
        full = len(self._seen) >= self.max_entries
        if at_cap or full:
            # Both bounds may bind: wait until the signer's oldest and the guard's oldest are
            # gone, so the retry finds room in both.
            blocking = [held[0]] if at_cap else []
            blocking += [self._expiry[0][0]] if full else []
            raise ReplayGuardFull(
                f"more than {self.max_per_signer} envelopes by this key in {self.window_s} s"
                if at_cap
                else "replay guard is full",
                self._retry_after(max(blocking)),
            )

    def _retry_after(self, issued_at: int) -> int:
        """Seconds until the guard forgets a nonce issued at ``issued_at``: once its latest
        ``now`` passes ``issued_at + window_s`` (:meth:`_forget_before`); at least 1."""
        return max(1, issued_at + self.window_s + 1 - self._latest_now)

    def _record(self, signer: str, nonce: str, issued_at: int) -> None:
        self._seen[(signer, nonce)] = issued_at
        heapq.heappush(self._per_signer.setdefault(signer, []), issued_at)
        heapq.heappush(self._expiry, (issued_at, signer, nonce))

    def _forget_before(self, oldest: int) -> None:
        while self._expiry and self._expiry[0][0] < oldest:
            _, signer, nonce = heapq.heappop(self._expiry)
            del self._seen[(signer, nonce)]
            held = self._per_signer[signer]
            heapq.heappop(held)  # this signer's oldest: as old as this one, or older
            if not held:
                del self._per_signer[signer]
