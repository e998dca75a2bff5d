"""Model provenance: what a model version's digest is, and what a timestamp proof says about it.

This module owns

* the **canonical serialisation** of a model version (weights + metadata) and its SHA-256
  digest, the 32 bytes that are anchored in Bitcoin with OpenTimestamps (SRS-NODE-10,
  docs/ots-verification.md);
* the values :class:`ModelVersion`, :class:`Verification` (confirmed at a block height and
  time, or a precise :class:`FailureReason`) and :class:`ProofStatus` (what the API lists);
* the pure judgement of one ``BitcoinBlockHeaderAttestation`` against the header a chain
  returned (:func:`check_block_attestation`): the header hashes to the block hash the chain
  reported for that height, its Merkle root (internal byte order) is the attested message, and
  its proof of work meets its own ``nBits`` target, which must not be easier than the network's
  proof-of-work limit (:class:`Network`). Header arithmetic is reused from
  :mod:`owm_core.pool.bitcoin`;
* the use case :func:`owm_core.provenance.verification.verify_model_version`, which the node
  (before loading weights) and the API
  (OTS status of a version) call with a :class:`~owm_core.ports.timestamping.Timestamping`.

Canonical serialisation, version 1 (all integers little-endian, unsigned)::

    serialisation = b"OWM-MODEL-V1\\n"
                    u32  len(meta)      meta
                    u32  n_tensors
                    n_tensors × tensor_record            (sorted by name, UTF-8 byte order)
    tensor_record = u32  len(name)      name              (UTF-8, non-empty)
                    u8   len(dtype)     dtype             (ASCII: "float32", "bfloat16", "int64", …)
                    u32  ndim           ndim × u64 dim
                    u64  len(data)      data              (elements in C order, each little-endian)
    meta          = JSON of the metadata object: keys sorted, separators "," and ":",
                    UTF-8 without escaping non-ASCII (ensure_ascii=False); values are JSON strings,
                    integers, booleans, null, lists and objects only (no floats: their text form
                    is not canonical across languages)
    digest        = SHA-256(serialisation)

``dtype`` is the element type's name as both torch and numpy spell it (``torch.float32`` →
``"float32"``, numpy ``float32`` → ``"float32"``), so the same numbers held as a torch tensor or
as a numpy array have the same digest. ``bool`` elements are one byte, 0 or 1.

:func:`new_model_version` puts ``"version"``, ``"sub_model"`` and ``"parent"`` (the parent
version's digest hex, or null) into the metadata next to the caller's own keys; ``created_at`` is
*not* hashed (the timestamp proof is the evidence of time).
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from owm_core import fields
from owm_core.errors import InvalidShare, InvalidValue
from owm_core.pool.bitcoin import HEADER_SIZE, BlockHeader, compact_to_target

if TYPE_CHECKING:
    import torch


    Tensor = torch.Tensor | np.ndarray[Any, Any]
    """A weight: a torch tensor or a numpy array (any dtype with a little-endian byte form)."""

SERIALISATION_MAGIC = b"OWM-MODEL-V1\n"
"""First bytes of the canonical serialisation; a new layout gets a new magic."""

VERSION_PATTERN = r"owm-v[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?"

# --------------------------------------------------------------------------- digest


def _is_torch(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch (≈3 s) for numpy weights:
    a tensor can only exist once its creator has imported torch."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _dtype_name(value: Tensor) -> str:
    if _is_torch(value):
        return str(value.dtype).removeprefix("torch.")
    assert isinstance(value, np.ndarray)
    return str(value.dtype.name)


def _tensor_bytes(value: Tensor) -> bytes:
    """The elements of ``value`` in C order, each little-endian, whatever the host's order."""
    if _is_torch(value):
        import torch

        assert isinstance(value, torch.Tensor)
        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        as_int = ints.get(flat.element_size())
        array = flat.view(as_int).numpy() if as_int is not None else flat.numpy()
    else:
        array = np.ascontiguousarray(value).reshape(-1)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.byteswap()
    return array.tobytes()


def _tensor_shape(value: Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def canonical_metadata(metadata: Mapping[str, Any]) -> bytes:
    """The metadata's canonical JSON (sorted keys, compact, UTF-8); floats are refused."""

    def check(value: Any, path: str) -> None:
        if isinstance(value, float):
            raise InvalidValue("metadata", f"{path} is a float; use an integer or a string")
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidValue("metadata", f"{path} has a non-text key {key!r}")
                check(item, f"{path}.{key}")
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                check(item, f"{path}[{index}]")
        elif value is not None and not isinstance(value, str | int | bool):
            raise InvalidValue("metadata", f"{path} is a {type(value).__name__}, not JSON")

    check(metadata, "metadata")
    return json.dumps(
        metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _canonical_chunks(
    weights: Mapping[str, Tensor], metadata: Mapping[str, Any]
) -> Iterator[bytes]:
    meta = canonical_metadata(metadata)
    yield SERIALISATION_MAGIC
    yield struct.pack("<I", len(meta)) + meta
    named: list[tuple[bytes, Tensor]] = []
    for name, value in weights.items():
        if not isinstance(name, str) or not name:
            raise InvalidValue("weights", f"tensor names must be non-empty text, got {name!r}")
        if not (_is_torch(value) or isinstance(value, np.ndarray)):
            raise InvalidValue("weights", f"{name} is a {type(value).__name__}, not a tensor")
        named.append((name.encode("utf-8"), value))
    named.sort(key=lambda item: item[0])
    yield struct.pack("<I", len(named))
    for name_bytes, value in named:
        dtype = _dtype_name(value).encode("ascii")
        shape = _tensor_shape(value)
        data = _tensor_bytes(value)
        yield struct.pack("<I", len(name_bytes)) + name_bytes
        yield struct.pack("<B", len(dtype)) + dtype
        yield struct.pack(f"<I{len(shape)}Q", len(shape), *shape)
        yield struct.pack("<Q", len(data))
        yield data


def canonical_serialisation(weights: Mapping[str, Tensor], metadata: Mapping[str, Any]) -> bytes:
    """The documented byte string whose SHA-256 is the model version's digest (module doc)."""
    return b"".join(_canonical_chunks(weights, metadata))


def model_digest(weights: Mapping[str, Tensor], metadata: Mapping[str, Any]) -> bytes:
    """SHA-256 of the canonical serialisation, streamed tensor by tensor (no full copy)."""
    digest = hashlib.sha256()
    for chunk in _canonical_chunks(weights, metadata):
        digest.update(chunk)
    return digest.digest()


# --------------------------------------------------------------------------- model versions


@attrs.frozen
class ModelVersion:
    """One released version of a (sub-)model and the digest that is timestamped (SRS-NODE-10).

    ``version`` is the conglomerate's release (``owm-v0.4.2``), ``sub_model`` the sub-model it
    belongs to (``owm-geo``), ``parent`` the digest hex of the version it was derived from.
    """

    version: str = attrs.field(validator=fields.text(max_len=64, pattern=VERSION_PATTERN))
    sub_model: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    digest: str = attrs.field(validator=fields.hex_digest(32))
    created_at: int = attrs.field(validator=fields.timestamp())
    parent: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(fields.hex_digest(32)),
    )

    @property
    def id(self) -> str:
        """The version's identifier in the API, URL-safe: ``owm-geo@owm-v0.4.2``."""
        return f"{self.sub_model}@{self.version}"

    @property
    def digest_bytes(self) -> bytes:
        """The 32 digest bytes, as the timestamp proof commits to them."""
        return bytes.fromhex(self.digest)


def version_metadata(
    version: str, sub_model: str, parent: str | None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The metadata object hashed with the weights: the caller's keys plus the version's own."""
    reserved = {"version", "sub_model", "parent"}
    clash = reserved & set(extra or {})
    if clash:
        raise InvalidValue("metadata", f"keys {sorted(clash)} are set by the version itself")
    return {**(extra or {}), "version": version, "sub_model": sub_model, "parent": parent}


def new_model_version(
    version: str,
    sub_model: str,
    weights: Mapping[str, Tensor],
    created_at: int,
    parent: str | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> ModelVersion:
    """Describe a freshly produced model version by its digest, ready to be stamped."""
    metadata = version_metadata(version, sub_model, parent, extra_metadata)
    return ModelVersion(
        version=version,
        sub_model=sub_model,
        digest=model_digest(weights, metadata).hex(),
        created_at=created_at,
        parent=parent,
    )


# --------------------------------------------------------------------------- proofs


class FailureReason(enum.StrEnum):
    """Why a timestamp proof does not prove a digest's existence (precise, machine-readable)."""

    DIGEST_MISMATCH = "digest_mismatch"
    """The proof is for another digest than the one asked about."""
    UNKNOWN_BLOCK = "unknown_block"
    """The attested block height does not exist on the chain consulted."""
    PENDING_ONLY = "pending_only"
    """The proof only holds calendar promises; run an upgrade later."""
    BAD_HEADER = "bad_header"
    """The header's Merkle root is not the attested message, or it is not the chain's block."""
    BAD_POW = "bad_pow"
    """The header's hash is above its target, or the target is easier than the network allows."""
    MALFORMED = "malformed"
    """The bytes are not an OpenTimestamps proof this verifier can read."""
    UNSUPPORTED = "unsupported"
    """The proof has neither a Bitcoin nor a pending attestation (other chains, unknown tags)."""


class ProofStatus(enum.StrEnum):
    """A model version's OTS status as listed by the API (GET /v1/model/versions)."""

    NONE = "none"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class Network(enum.Enum):
    """Bitcoin networks and their proof-of-work limits (``powLimit`` in Bitcoin Core's params).

    A header's own ``nBits`` can claim any target; it proves work only when that target is no
    easier than the network's limit.
    """

    MAIN = ("main", 0x1D00FFFF)
    TESTNET = ("test", 0x1D00FFFF)
    SIGNET = ("signet", 0x1E0377AE)
    REGTEST = ("regtest", 0x207FFFFF)

    @property
    def chain_name(self) -> str:
        """The name bitcoind's ``getblockchaininfo`` reports (``main``, ``regtest``, …)."""
        return self.value[0]

    @property
    def pow_limit(self) -> int:
        """The easiest target a valid header of this network may have."""
        return compact_to_target(self.value[1])

    @classmethod
    def from_name(cls, name: str) -> Network:
        """The network called ``name``: main/mainnet, test/testnet4, signet, regtest."""
        for network in cls:
            if name in (network.chain_name, network.name.lower(), network.chain_name + "net"):
                return network
        if name == "testnet4":
            return cls.TESTNET
        raise InvalidValue("network", f"unknown Bitcoin network {name!r}")


@attrs.frozen
class Verification:
    """The outcome of verifying a proof for a digest: a block height and time, or a reason.

    Confirmed: ``height``, ``block_time`` (the header's nTime, POSIX seconds) and ``block_hash``
    (display hex) are set and ``failure`` is None. Otherwise ``failure`` says why and
    ``detail`` says it in words; ``pending_uris`` lists the calendars still owing an upgrade.
    """

    digest: str = attrs.field(
        validator=fields.text(min_len=40, max_len=128, pattern=r"([0-9a-f]{2})+")
    )
    """Hex of the digest asked about (32 bytes for SHA-256; 20 for SHA-1/RIPEMD-160 proofs)."""
    height: int | None = None
    block_time: int | None = None
    block_hash: str | None = None
    failure: FailureReason | None = None
    detail: str = ""
    pending_uris: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        confirmed = self.height is not None
        if confirmed == (self.failure is not None):
            raise InvalidValue("failure", "exactly one of height and failure must be set")
        if confirmed and (self.block_time is None or self.block_hash is None):
            raise InvalidValue("block_time", "a confirmation names its block's time and hash")

    @classmethod
    def confirmed(
        cls, digest: bytes, height: int, block_time: int, block_hash: str,
        pending_uris: Sequence[str] = (),
    ) -> Verification:
        """The digest existed no later than block ``height`` mined at ``block_time``."""
        return cls(
            digest=digest.hex(), height=height, block_time=block_time, block_hash=block_hash,
            detail=f"Bitcoin block {height} attests existence as of {block_time}",
            pending_uris=tuple(pending_uris),
        )

    @classmethod
    def failed(
        cls, digest: bytes, reason: FailureReason, detail: str, pending_uris: Sequence[str] = ()
    ) -> Verification:
        """The proof does not establish the digest's existence, for ``reason``."""
        return cls(digest=digest.hex(), failure=reason, detail=detail,
                   pending_uris=tuple(pending_uris))

    @property
    def ok(self) -> bool:
        """Whether the digest is proven to exist at a Bitcoin block."""
        return self.failure is None

    @property
    def status(self) -> ProofStatus:
        """The API's view: confirmed, pending (calendar promise only) or failed."""
        if self.failure is None:
            return ProofStatus.CONFIRMED
        if self.failure is FailureReason.PENDING_ONLY:
            return ProofStatus.PENDING
        return ProofStatus.FAILED


@attrs.frozen
class AttestationCheck:
    """The judgement of one Bitcoin attestation: the block it names, and success or a reason."""

    height: int
    failure: FailureReason | None
    detail: str
    block_time: int | None = None
    block_hash: str | None = None


def check_block_attestation(
    height: int,
    attested_root: bytes,
    block_hash_hex: str,
    header: bytes,
    network: Network,
) -> AttestationCheck:
    """Judge a ``BitcoinBlockHeaderAttestation(height)`` reached with message ``attested_root``.

    ``block_hash_hex`` is what the chain says is the block at ``height`` and ``header`` the 80
    bytes it returned for that hash. The checks, in order: 80 bytes that parse (bad_header); the
    header hashes to ``block_hash_hex`` (bad_header: the chain served another block); its Merkle
    root, compared in internal byte order, is ``attested_root`` (bad_header: the block does not
    commit to the proof); its ``nBits`` decode to a valid target no easier than the network's
    proof-of-work limit and its hash is ≤ that target (bad_pow). The OpenTimestamps reference
    library only does the Merkle comparison; the rest is what makes a header trustworthy when it
    comes from an RPC peer (SRS-NODE-10).
    """
    if len(header) != HEADER_SIZE:
        return AttestationCheck(height, FailureReason.BAD_HEADER,
                                f"block {height}: header is {len(header)} bytes, not 80")
    parsed = BlockHeader.parse(header)
    if parsed.hash_hex() != block_hash_hex:
        return AttestationCheck(
            height, FailureReason.BAD_HEADER,
            f"block {height}: header hashes to {parsed.hash_hex()}, chain said {block_hash_hex}",
        )
    if parsed.merkle_root != attested_root:
        return AttestationCheck(
            height, FailureReason.BAD_HEADER,
            f"block {height}: merkle root {parsed.merkle_root[::-1].hex()} is not the attested "
            f"{attested_root[::-1].hex()}",
        )
    try:
        target = compact_to_target(parsed.bits)
    except InvalidShare as exc:
        return AttestationCheck(height, FailureReason.BAD_POW, f"block {height}: {exc.message}")
    if target > network.pow_limit:
        return AttestationCheck(
            height, FailureReason.BAD_POW,
            f"block {height}: nBits {parsed.bits:#010x} is easier than {network.chain_name}'s "
            "proof-of-work limit",
        )
    if not parsed.meets_target(target):
        return AttestationCheck(height, FailureReason.BAD_POW,
                                f"block {height}: hash is above the target of its nBits")
    return AttestationCheck(height, None, f"block {height} verified",
                            block_time=parsed.time, block_hash=block_hash_hex)


_SEVERITY = (
    FailureReason.BAD_POW,
    FailureReason.BAD_HEADER,
    FailureReason.UNKNOWN_BLOCK,
)


def conclude(
    digest: bytes, checks: Sequence[AttestationCheck], pending_uris: Sequence[str]
) -> Verification:
    """Combine the checks of every Bitcoin attestation in a proof into one verdict.

    The earliest block that verified wins (a proof may hold several). If none verified, the most
    serious failure is reported (bad_pow, then bad_header, then unknown_block); with no Bitcoin
    attestation at all the proof is pending_only when a calendar owes one, else unsupported.
    """
    good = sorted((c for c in checks if c.failure is None), key=lambda c: c.height)
    if good:
        best = good[0]
        assert best.block_time is not None and best.block_hash is not None
        return Verification.confirmed(digest, best.height, best.block_time, best.block_hash,
                                      pending_uris)
    for reason in _SEVERITY:
        for check in checks:
            if check.failure is reason:
                return Verification.failed(digest, reason, check.detail, pending_uris)
    if pending_uris:
        return Verification.failed(
            digest, FailureReason.PENDING_ONLY,
            "only pending attestations from " + ", ".join(pending_uris), pending_uris,
        )
    return Verification.failed(digest, FailureReason.UNSUPPORTED,
                               "the proof has no Bitcoin or pending attestation")
