"""The timestamping port on OpenTimestamps (python-opentimestamps 0.4.x).

Proofs are the bytes of standard detached ``.ots`` files (``DetachedTimestampFile``): what the
reference ``ots`` client writes and reads. Stamping does what ``ots stamp`` does for one file
(a 16-byte nonce appended to the file's SHA-256, hashed again, submitted to every calendar);
upgrading asks each pending attestation's calendar for the rest of the path and merges it.

Verification walks every attestation. For each ``BitcoinBlockHeaderAttestation(height)`` it asks
the chain port for the block hash at that height and its 80-byte header, then judges it with
:func:`owm_core.provenance.versions.check_block_attestation`: header ↔ hash, Merkle root (internal
byte
order) ↔ attested message, and proof of work against the network's limit. The reference
library's ``verify_against_blockheader`` checks only the Merkle root, so the work check is ours.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Protocol

import attrs
from opentimestamps.core.notary import (
    BitcoinBlockHeaderAttestation,
    PendingAttestation,
    TimeAttestation,
)
from opentimestamps.core.op import OpAppend, OpSHA256
from opentimestamps.core.serialize import (
    BytesDeserializationContext,
    BytesSerializationContext,
)
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp, make_merkle_tree

from owm_core.errors import (
    CalendarUnavailable,
    ChainUnavailable,
    InvalidValue,
    ProofMalformed,
    UnknownBlock,
)
from owm_core.ports.chain import Chain
from owm_core.provenance.versions import (
    AttestationCheck,
    FailureReason,
    Network,
    Verification,
    check_block_attestation,
    conclude,
)

log = logging.getLogger(__name__)

NONCE_BYTES = 16


class CalendarClient(Protocol):
    """What both :class:`owm_adapters.provenance.ots_calendar.Calendar` and ``RemoteCalendar``
    offer."""

    url: str

    def submit(self, digest: bytes) -> Timestamp:
        """Timestamp from ``digest`` to a pending attestation (or further)."""
        ...

    def get_timestamp(self, commitment: bytes) -> Timestamp:
        """Timestamp from ``commitment`` onwards; ``KeyError`` while pending."""
        ...


# --------------------------------------------------------------------------- file format


def parse_proof(proof: bytes) -> DetachedTimestampFile:
    """The detached timestamp in ``proof``; ``ProofMalformed`` for anything else.

    Trailing bytes after the timestamp are refused, as the reference client does.
    """
    if not isinstance(proof, bytes):
        raise ProofMalformed(f"a proof is bytes, got {type(proof).__name__}")
    ctx = BytesDeserializationContext(proof)
    try:
        detached = DetachedTimestampFile.deserialize(ctx)
        ctx.assert_eof()
    except Exception as exc:  # the library raises many kinds: all mean "not a proof"
        raise ProofMalformed(f"not an OpenTimestamps proof: {exc}") from exc
    return detached


def serialise_proof(detached: DetachedTimestampFile) -> bytes:
    """The ``.ots`` bytes of ``detached``."""
    ctx = BytesSerializationContext()
    detached.serialize(ctx)
    return bytes(ctx.getbytes())


@attrs.frozen
class AttestationInfo:
    """One attestation found in a proof: its kind, what it names, and the message it attests."""

    kind: str
    """``bitcoin``, ``pending``, or the reference library's class name for others."""
    message: bytes
    height: int | None = None
    uri: str | None = None


@attrs.frozen
class ProofInfo:
    """What ``ots info`` shows about a proof, as values: hash op, digest, attestations."""

    hash_op: str
    digest: bytes
    attestations: tuple[AttestationInfo, ...]
    tree: str

    @property
    def bitcoin_heights(self) -> tuple[int, ...]:
        """Heights of the Bitcoin attestations, ascending."""
        return tuple(sorted(a.height for a in self.attestations if a.height is not None))

    @property
    def pending_uris(self) -> tuple[str, ...]:
        """Calendars that still owe an upgrade, sorted."""
        return tuple(sorted({a.uri for a in self.attestations if a.uri is not None}))


def _attestation_info(message: bytes, attestation: TimeAttestation) -> AttestationInfo:
    if isinstance(attestation, BitcoinBlockHeaderAttestation):
        return AttestationInfo("bitcoin", message, height=attestation.height)
    if isinstance(attestation, PendingAttestation):
        return AttestationInfo("pending", message, uri=attestation.uri)
    return AttestationInfo(type(attestation).__name__, message)


def describe(proof: bytes) -> ProofInfo:
    """Parse ``proof`` and list its attestations in the reference library's walk order."""
    detached = parse_proof(proof)
    found = sorted(
        (_attestation_info(msg, att) for msg, att in detached.timestamp.all_attestations()),
        key=lambda a: (a.kind, a.height or 0, a.uri or "", a.message),
    )
    return ProofInfo(
        hash_op=str(detached.file_hash_op),
        digest=bytes(detached.file_digest),
        attestations=tuple(found),
        tree=detached.timestamp.str_tree(),
    )


def digest_of(proof: bytes, stream: BinaryIO) -> bytes:
    """Hash ``stream`` with the proof's own file hash op (SHA-256, SHA-1, RIPEMD-160 …)."""
    detached = parse_proof(proof)
    return bytes(detached.file_hash_op.hash_fd(stream))


def _walk(timestamp: Timestamp) -> Iterable[Timestamp]:
    yield timestamp
    for sub in timestamp.ops.values():
        yield from _walk(sub)


# --------------------------------------------------------------------------- the adapter


class OpenTimestamps:
    """The :class:`~owm_core.ports.timestamping.Timestamping` port on OpenTimestamps.

    ``calendars`` receive stamps (all at once, each in its own thread, so one slow calendar
    costs its own timeout and not the others') and answer upgrades (matched by URL);
    ``remote_calendar`` may build a client for URLs met in a proof that are not among them, or
    answer None to leave them pending (the whitelisted public calendars:
    :class:`~owm_adapters.provenance.calendar_http.CalendarDirectory`); ``chain`` supplies
    headers for verification, judged against ``network``'s proof-of-work limit.
    ``min_calendars`` must accept a stamp, otherwise it fails with ``CalendarUnavailable``.
    """

    def __init__(
        self,
        chain: Chain | None,
        network: Network = Network.MAIN,
        calendars: Sequence[CalendarClient] = (),
        randomness: Callable[[int], bytes] = os.urandom,
        min_calendars: int = 1,
        remote_calendar: Callable[[str], CalendarClient | None] | None = None,
    ) -> None:
        self._chain = chain
        self._network = network
        self._calendars: Mapping[str, CalendarClient] = {c.url: c for c in calendars}
        self._randomness = randomness
        self._min_calendars = min_calendars
        self._remote_calendar = remote_calendar

    @property
    def network(self) -> Network:
        """The proof-of-work rules headers are judged by."""
        return self._network

    @property
    def has_chain(self) -> bool:
        """Whether a chain is configured to look up block headers."""
        return self._chain is not None

    def chain_height(self) -> int:
        """The chain's tip height (readiness: the coordinator's Bitcoin node answers)."""
        if self._chain is None:
            raise ChainUnavailable("no chain is configured to look up Bitcoin block headers")
        return self._chain.tip_height()

    def stamp(self, digest: bytes) -> bytes:
        """A pending proof for ``digest`` (SHA-256), as ``ots stamp`` makes one."""
        if not isinstance(digest, bytes) or len(digest) != 32:
            raise InvalidValue("digest", "must be the 32 bytes of a SHA-256 digest")
        detached = DetachedTimestampFile(OpSHA256(), Timestamp(digest))
        nonce = self._randomness(NONCE_BYTES)
        nonce_stamp = detached.timestamp.ops.add(OpAppend(nonce))
        merkle_tip = make_merkle_tree([nonce_stamp.ops.add(OpSHA256())])
        accepted: list[str] = []
        failures: list[str] = []
        calendars = list(self._calendars.items())
        with ThreadPoolExecutor(max(1, len(calendars)), thread_name_prefix="owm-ots") as pool:
            answers = [(url, pool.submit(c.submit, merkle_tip.msg)) for url, c in calendars]
            for url, answer in answers:
                try:
                    merkle_tip.merge(answer.result())
                    accepted.append(url)
                except Exception as exc:  # a calendar down must not stop the others
                    message = str(getattr(exc, "message", exc))
                    failures.append(message if url in message else f"{url}: {message}")
        for failure in failures:
            log.warning("calendar did not accept a digest: %s", failure)
        if len(accepted) < self._min_calendars:
            raise CalendarUnavailable(
                f"{len(accepted)} of {len(self._calendars)} calendars accepted the digest, "
                f"{self._min_calendars} needed" + (f" ({'; '.join(failures)})" if failures else "")
            )
        return serialise_proof(detached)

    def _calendar(self, url: str) -> CalendarClient | None:
        if url in self._calendars:
            return self._calendars[url]
        return self._remote_calendar(url) if self._remote_calendar is not None else None

    def upgrade(self, proof: bytes) -> bytes:
        """Merge what the calendars now know into every pending attestation's place."""
        detached = parse_proof(proof)
        for sub in list(_walk(detached.timestamp)):
            for attestation in list(sub.attestations):
                if not isinstance(attestation, PendingAttestation):
                    continue
                calendar = self._calendar(attestation.uri)
                if calendar is None:
                    continue
                try:
                    sub.merge(calendar.get_timestamp(sub.msg))
                except KeyError:
                    continue
                except CalendarUnavailable as exc:  # tried again at the next upgrade
                    log.warning("calendar %s unreachable for an upgrade: %s", attestation.uri,
                                exc.message)
        return serialise_proof(detached)

    def verify(self, proof: bytes, digest: bytes) -> Verification:
        """Check ``proof`` for ``digest`` against the chain's headers (module doc)."""
        try:
            detached = parse_proof(proof)
        except ProofMalformed as exc:
            return Verification.failed(digest, FailureReason.MALFORMED, exc.message)
        if bytes(detached.file_digest) != digest:
            return Verification.failed(
                digest, FailureReason.DIGEST_MISMATCH,
                f"the proof is for {detached.file_hash_op} {detached.file_digest.hex()}, "
                f"not {digest.hex()}",
            )
        checks: list[AttestationCheck] = []
        pending: set[str] = set()
        for message, attestation in detached.timestamp.all_attestations():
            if isinstance(attestation, PendingAttestation):
                pending.add(attestation.uri)
            elif isinstance(attestation, BitcoinBlockHeaderAttestation):
                checks.append(self._check(attestation.height, bytes(message)))
        return conclude(digest, checks, sorted(pending))

    def _check(self, height: int, message: bytes) -> AttestationCheck:
        if self._chain is None:
            raise ChainUnavailable("no chain is configured to look up Bitcoin block headers")
        try:
            block_hash = self._chain.block_hash(height)
            header = self._chain.block_header(block_hash)
        except UnknownBlock as exc:
            return AttestationCheck(height, FailureReason.UNKNOWN_BLOCK,
                                    f"block {height} is not on the chain consulted ({exc.message})")
        return check_block_attestation(height, message, block_hash, header, self._network)
