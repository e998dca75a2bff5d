"""Signed, timestamped OWM release packages: what a node must check before a self-update.

SRS 4.1: the node daemon self-updates via signed release packages that are OTS-verified. This
module owns the pure rules; reading files, the chain and staging are the adapter's
(:mod:`owm_adapters.node.self_update`).

Release manifest
----------------
A :class:`ReleaseManifest` describes one package archive (a wheel or a tarball) by its SHA-256.
Its canonical encoding is :func:`owm_core.identity.envelopes.canonical_bytes` of the JSON object::

    {"archive_sha256": <64 hex>, "created_at": <int POSIX s>, "name": "owm",
     "notes": <text, may be "">, "version": <"MAJOR.MINOR.PATCH[-pre|+build]">}

(keys sorted, no whitespace, UTF-8; see :mod:`owm_core.identity.envelopes`). The release file
``M.json`` holds exactly these bytes, so the **manifest digest** — ``SHA-256(canonical
manifest)`` — is also the SHA-256 of the file: the standard ``ots stamp M.json`` /
``ots verify M.json.ots`` work on it unchanged, and OWM's own verifier uses the same digest.

Signatures
----------
Release signers (maintainers) sign the domain-separated message::

    b"owm/release/v1\\x00" + canonical manifest

with Ed25519 (:mod:`owm_core.identity.keys`); the prefix keeps a release signature from ever being
valid as an envelope or anything else. Signatures travel beside the manifest (``M.json.sig``, a
JSON list of ``{"signer": <public key hex>, "signature": <128 hex>}``) so that several
maintainers can sign one stamped manifest without changing its digest.

Verdict
-------
:func:`verify_release` accepts a package only if, in this order:

1. the archive's SHA-256 is the manifest's ``archive_sha256`` (else ``digest_mismatch``);
2. at least ``threshold`` **distinct trusted** keys produced a valid signature (several
   signatures by one key count once; untrusted keys never count). Short of that the refusal
   names the most telling cause: ``bad_signature`` (a trusted key's signature does not verify),
   ``untrusted_signer``, ``no_trusted_keys`` or ``not_enough_signers``;
3. the OpenTimestamps proof of the manifest digest is CONFIRMED in a Bitcoin block
   (``proof_pending`` while only calendars vouch for it; ``proof_failed`` with the
   :class:`~owm_core.provenance.versions.FailureReason` otherwise).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue, SignatureInvalid
from owm_core.identity.envelopes import canonical_bytes, parse_canonical_json
from owm_core.identity.keys import Identity, parse_public_key, parse_signature, verify_signature
from owm_core.provenance.versions import FailureReason, ProofStatus, Verification

RELEASE_DOMAIN = b"owm/release/v1\x00"
"""Prefix of every release-signing message (domain separation)."""

RELEASE_NAME = "owm"
RELEASE_VERSION_PATTERN = r"[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?"
MAX_NOTES_CHARS = 4_000
MAX_SIGNATURES = 64
MANIFEST_FIELDS = frozenset({"name", "version", "archive_sha256", "created_at", "notes"})
REQUIRED_MANIFEST_FIELDS = MANIFEST_FIELDS - {"notes"}


@attrs.frozen
class ReleaseManifest:
    """One OWM release package, named by the SHA-256 of its archive (module docstring)."""

    version: str = attrs.field(validator=fields.text(max_len=64, pattern=RELEASE_VERSION_PATTERN))
    archive_sha256: str = attrs.field(validator=fields.hex_digest(32))
    created_at: int = attrs.field(validator=fields.timestamp())
    name: str = attrs.field(default=RELEASE_NAME, validator=fields.one_of({RELEASE_NAME}))
    notes: str = attrs.field(default="", validator=fields.text(min_len=0,
                                                               max_len=MAX_NOTES_CHARS))

    def as_dict(self) -> dict[str, Any]:
        """The JSON object that is canonically encoded (all five fields)."""
        return {"name": self.name, "version": self.version,
                "archive_sha256": self.archive_sha256, "created_at": self.created_at,
                "notes": self.notes}

    def canonical(self) -> bytes:
        """The canonical encoding: the exact bytes of the release's ``M.json``."""
        return canonical_bytes(self.as_dict(), "manifest")

    @property
    def digest(self) -> bytes:
        """SHA-256 of the canonical encoding: what the OpenTimestamps proof anchors."""
        return hashlib.sha256(self.canonical()).digest()

    @classmethod
    def from_json(cls, data: bytes) -> ReleaseManifest:
        """Parse a manifest file strictly (no unknown or duplicate keys, no floats)."""
        raw = parse_canonical_json(data, "manifest")
        if not isinstance(raw, dict):
            raise InvalidValue("manifest", "must be a JSON object")
        unknown = set(raw) - MANIFEST_FIELDS
        missing = REQUIRED_MANIFEST_FIELDS - set(raw)
        if unknown or missing:
            raise InvalidValue("manifest", f"unknown fields {sorted(unknown)}, "
                                           f"missing fields {sorted(missing)}")
        if isinstance(raw["created_at"], bool):
            raise InvalidValue("created_at", "must be an integer")
        return cls(**raw)


def signing_message(manifest: ReleaseManifest) -> bytes:
    """What release signers sign: ``RELEASE_DOMAIN + canonical manifest``."""
    return RELEASE_DOMAIN + manifest.canonical()


def _to_signer(value: object) -> str:
    return parse_public_key(value, "signer")


def _to_signature(value: object) -> str:
    return parse_signature(value, "signature")


@attrs.frozen
class ReleaseSignature:
    """One signer's Ed25519 signature over a manifest's signing message (hex, as it travels)."""

    signer: str = attrs.field(converter=_to_signer)
    signature: str = attrs.field(converter=_to_signature)

    def as_dict(self) -> dict[str, str]:
        """The JSON object written to ``M.json.sig``."""
        return {"signer": self.signer, "signature": self.signature}


def sign_release(identity: Identity, manifest: ReleaseManifest) -> str:
    """A maintainer's signature of ``manifest`` (128 hex), to be published in ``M.json.sig``."""
    return identity.sign(signing_message(manifest)).hex()


def signatures_to_json(signatures: Sequence[ReleaseSignature]) -> bytes:
    """The canonical bytes of a signatures file."""
    return canonical_bytes([s.as_dict() for s in signatures], "signatures")


def signatures_from_json(data: bytes) -> tuple[ReleaseSignature, ...]:
    """Parse a signatures file: a JSON list of ``{"signer", "signature"}`` objects."""
    raw = parse_canonical_json(data, "signatures")
    if not isinstance(raw, list) or len(raw) > MAX_SIGNATURES:
        raise InvalidValue("signatures", f"must be a JSON list of at most {MAX_SIGNATURES}")
    parsed = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or set(item) != {"signer", "signature"}:
            raise InvalidValue(f"signatures[{index}]", "must be {signer, signature}")
        parsed.append(ReleaseSignature(signer=item["signer"], signature=item["signature"]))
    return tuple(parsed)


class ReleaseRefusal(enum.StrEnum):
    """Why a release package must not be installed (precise, machine-readable)."""

    DIGEST_MISMATCH = "digest_mismatch"
    """The archive's SHA-256 is not the one the manifest names."""
    NO_TRUSTED_KEYS = "no_trusted_keys"
    """The node trusts no release signer (``[node] release_keys`` is empty)."""
    UNTRUSTED_SIGNER = "untrusted_signer"
    """Signatures come from keys the node does not trust, and trusted ones are too few."""
    BAD_SIGNATURE = "bad_signature"
    """A trusted key's signature does not verify for this manifest, and valid ones are too few."""
    NOT_ENOUGH_SIGNERS = "not_enough_signers"
    """Fewer than ``threshold`` distinct trusted keys signed."""
    PROOF_PENDING = "proof_pending"
    """The manifest digest is stamped but not yet in a Bitcoin block; upgrade the proof later."""
    PROOF_FAILED = "proof_failed"
    """The OpenTimestamps proof does not anchor the manifest digest (see ``detail``)."""


@attrs.frozen
class ReleaseVerdict:
    """The judgement of a release package: accepted, or refused with a reason and words."""

    manifest: ReleaseManifest
    refusal: ReleaseRefusal | None
    detail: str
    signers: tuple[str, ...] = ()
    """The distinct trusted keys whose signatures verified, sorted."""
    verification: Verification | None = None

    @property
    def ok(self) -> bool:
        """Whether the package may be staged for installation."""
        return self.refusal is None

    @property
    def message(self) -> str:
        """One line for operators: ``verified …`` or ``refused: <reason>: <detail>``."""
        if self.ok:
            return self.detail
        assert self.refusal is not None
        return f"refused: {self.refusal.value}: {self.detail}"


def _refuse(manifest: ReleaseManifest, refusal: ReleaseRefusal, detail: str,
            signers: Iterable[str] = (), verification: Verification | None = None
            ) -> ReleaseVerdict:
    return ReleaseVerdict(manifest, refusal, detail, tuple(sorted(signers)), verification)


def verify_release(
    archive_sha256: str,
    manifest: ReleaseManifest,
    signatures: Sequence[ReleaseSignature],
    trusted_keys: Iterable[str],
    proof_verification: Verification,
    threshold: int = 1,
) -> ReleaseVerdict:
    """Judge a release package before a self-update (SRS 4.1, SRS-NODE-10; module docstring).

    ``archive_sha256`` is the hex SHA-256 the caller computed from the archive's bytes;
    ``proof_verification`` is the Timestamping port's verdict on the manifest's ``.ots`` proof
    for :attr:`ReleaseManifest.digest`. Nothing here raises for a bad package: every refusal is
    a verdict with a reason (a ``threshold`` below 1 or a malformed trusted key does raise).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise InvalidValue("threshold", "must be an integer ≥ 1")
    trusted = frozenset(parse_public_key(key, "release_keys") for key in trusted_keys)
    if archive_sha256 != manifest.archive_sha256:
        return _refuse(manifest, ReleaseRefusal.DIGEST_MISMATCH,
                       f"the archive hashes to {archive_sha256}, the manifest of "
                       f"{manifest.name} {manifest.version} names {manifest.archive_sha256}")
    message = signing_message(manifest)
    valid: set[str] = set()
    bad: set[str] = set()
    untrusted: set[str] = set()
    for signature in signatures:
        if signature.signer not in trusted:
            untrusted.add(signature.signer)
            continue
        try:
            verify_signature(signature.signer, message, bytes.fromhex(signature.signature))
        except SignatureInvalid:
            bad.add(signature.signer)
        else:
            valid.add(signature.signer)
    if len(valid) < threshold:
        counted = f"{len(valid)} of the {threshold} trusted signatures required"
        if not trusted:
            return _refuse(manifest, ReleaseRefusal.NO_TRUSTED_KEYS,
                           "this node trusts no release signer; set [node] release_keys")
        if bad - valid:
            return _refuse(manifest, ReleaseRefusal.BAD_SIGNATURE,
                           f"the signature of trusted key {sorted(bad - valid)[0]} does not "
                           f"verify for this manifest ({counted})", valid)
        if untrusted:
            return _refuse(manifest, ReleaseRefusal.UNTRUSTED_SIGNER,
                           f"signer {sorted(untrusted)[0]} is not a trusted release key "
                           f"({counted})", valid)
        return _refuse(manifest, ReleaseRefusal.NOT_ENOUGH_SIGNERS, counted, valid)
    if proof_verification.digest != manifest.digest.hex():
        return _refuse(manifest, ReleaseRefusal.PROOF_FAILED,
                       f"{FailureReason.DIGEST_MISMATCH.value}: the proof was checked for "
                       f"{proof_verification.digest}, the manifest digest is "
                       f"{manifest.digest.hex()}", valid, proof_verification)
    if proof_verification.status is ProofStatus.PENDING:
        return _refuse(manifest, ReleaseRefusal.PROOF_PENDING,
                       f"{proof_verification.detail}; run `owm ots upgrade` later", valid,
                       proof_verification)
    if proof_verification.failure is not None:
        return _refuse(manifest, ReleaseRefusal.PROOF_FAILED,
                       f"{proof_verification.failure.value}: {proof_verification.detail}",
                       valid, proof_verification)
    return ReleaseVerdict(
        manifest, None,
        f"verified {manifest.name} {manifest.version}: signed by {len(valid)} trusted "
        f"key(s), manifest anchored in Bitcoin block {proof_verification.height}",
        tuple(sorted(valid)), proof_verification,
    )
