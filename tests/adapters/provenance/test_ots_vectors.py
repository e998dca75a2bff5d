"""Byte compatibility with the OpenTimestamps format, and every verdict of the verifier.

Proofs are read by the reference library, by our adapter and by an independent hand decoder
written from the format description below; all three must report the same attestations, and
what we parse must re-serialise byte for byte. The proofs are made here: by the devnet calendar
on the embedded local chain, by hand with the reference library (every op, other file hash ops,
Merkle trees, unknown notaries), and by mutating their bytes. Proofs we write are compared
byte for byte with hand-encoded bytes, both ways.

The reference client's real-world example proofs (LGPL test data, not in this repository, see
tests/ots_vectors.py) are only used for what they alone show: that proofs made by the public
calendars parse, re-serialise and decode alike, that hello-world.txt verifies at mainnet block
358391, and that the reference client's invalid examples are malformed to us too.

Format (python-opentimestamps ``core/timestamp.py``, ``core/op.py``, ``core/notary.py``)::

    file      = MAGIC  varuint(major version = 1)  file_hash_op_tag  digest  timestamp
    timestamp = (0xff item)* item                  an 0xff prefix means "another item follows"
    item      = 0x00 attestation | op timestamp
    op        = 0x08 sha256 | 0x02 sha1 | 0x03 ripemd160 | 0x67 keccak256
              | 0xf0 varbytes (append) | 0xf1 varbytes (prepend) | 0xf2 reverse | 0xf3 hexlify
    attestation = tag[8] varbytes(payload)
        Bitcoin  0588960d73d71901  payload = varuint(height)
        pending  83dfe30d2ef90c8e  payload = varbytes(uri)
    varuint   = 7 bits per byte, least significant first, 0x80 = more bytes follow
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from bitcoin.core import CBlockHeader
from Crypto.Hash import keccak
from opentimestamps.core.notary import (
    BitcoinBlockHeaderAttestation,
    PendingAttestation,
    UnknownAttestation,
    VerificationError,
)
from opentimestamps.core.op import (
    OpAppend,
    OpHexlify,
    OpKECCAK256,
    OpPrepend,
    OpReverse,
    OpRIPEMD160,
    OpSHA1,
    OpSHA256,
)
from opentimestamps.core.serialize import (
    BytesDeserializationContext,
    BytesSerializationContext,
    DeserializationError,
)
from opentimestamps.core.timestamp import DetachedTimestampFile, Timestamp, make_merkle_tree

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.provenance.ots import (
    OpenTimestamps,
    describe,
    digest_of,
    parse_proof,
    serialise_proof,
)
from owm_adapters.provenance.ots_calendar import Calendar, CommittedRound
from owm_core.errors import ProofMalformed
from owm_core.pool.bitcoin import BlockHeader, compact_to_target
from owm_core.provenance.versions import FailureReason, Network, ProofStatus
from tests.fakes.bitcoind_server import HeaderChain
from tests.ots_vectors import VECTORS, header_358391, requires_vectors, vector_params

MAGIC = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94"
BITCOIN_TAG = bytes.fromhex("0588960d73d71901")
PENDING_TAG = bytes.fromhex("83dfe30d2ef90c8e")
OTHER_TAG = bytes.fromhex("0123456789abcdef")
URL = "http://127.0.0.1:8080/calendar"
ALICE = "http://127.0.0.1:8081/alice"
BOB = "http://127.0.0.1:8082/bob"
DIGEST = hashlib.sha256(b"owm-v0.4.2/owm-geo").digest()

pytestmark = pytest.mark.filterwarnings(  # the reference library warns on building OpReverse
    "ignore:OpReverse may get removed:PendingDeprecationWarning")


# --------------------------------------------------------------------------- hand decoder


def _varuint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _varbytes(data: bytes) -> bytes:
    return _varuint(len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        assert len(chunk) == n, "truncated"
        self.pos += n
        return chunk

    def varuint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def varbytes(self) -> bytes:
        return self.take(self.varuint())


_UNARY: dict[int, Callable[[bytes], bytes]] = {
    0x08: lambda m: hashlib.sha256(m).digest(),
    0x02: lambda m: hashlib.sha1(m).digest(),
    0x03: lambda m: hashlib.new("ripemd160", m).digest(),
    0x67: lambda m: keccak.new(digest_bits=256, data=m).digest(),
    0xF2: lambda m: m[::-1],
    0xF3: lambda m: m.hex().encode(),
}
_DIGEST_LEN = {0x08: 32, 0x02: 20, 0x03: 20}

Found = list[tuple[bytes, str, object]]
"""(attested message, bitcoin | pending | other, height | uri | tag) per attestation."""


def hand_decode(data: bytes) -> tuple[int, bytes, Found]:
    """(file hash op tag, digest, attestations) of a proof, decoded by hand."""
    r = _Reader(data)
    assert r.take(len(MAGIC)) == MAGIC
    assert r.varuint() == 1
    op = r.take(1)[0]
    digest = r.take(_DIGEST_LEN[op])
    found: Found = []

    def timestamp(msg: bytes) -> None:
        while True:
            tag = r.take(1)[0]
            more = tag == 0xFF
            if more:
                tag = r.take(1)[0]
            if tag == 0x00:
                kind, payload = r.take(8), r.varbytes()
                if kind == BITCOIN_TAG:
                    found.append((msg, "bitcoin", _Reader(payload).varuint()))
                elif kind == PENDING_TAG:
                    found.append((msg, "pending", _Reader(payload).varbytes().decode()))
                else:
                    found.append((msg, "other", kind))
            elif tag == 0xF0:
                timestamp(msg + r.varbytes())
            elif tag == 0xF1:
                timestamp(r.varbytes() + msg)
            elif tag in _UNARY:
                timestamp(_UNARY[tag](msg))
            else:
                raise AssertionError(f"op {tag:#x} not handled by the hand decoder")
            if not more:
                return

    timestamp(digest)
    assert r.pos == len(data)
    return op, digest, found


# --------------------------------------------------------------------------- the three readers


def _reference(raw: bytes) -> DetachedTimestampFile:
    return DetachedTimestampFile.deserialize(BytesDeserializationContext(raw))


def _reference_bytes(detached: DetachedTimestampFile) -> bytes:
    ctx = BytesSerializationContext()
    detached.serialize(ctx)
    return bytes(ctx.getbytes())


def _reference_attestations(raw: bytes) -> Found:
    found: Found = []
    for msg, att in _reference(raw).timestamp.all_attestations():
        if isinstance(att, BitcoinBlockHeaderAttestation):
            found.append((bytes(msg), "bitcoin", att.height))
        elif isinstance(att, PendingAttestation):
            found.append((bytes(msg), "pending", att.uri))
        else:
            found.append((bytes(msg), "other", att.TAG))
    return sorted(found)


def _our_attestations(raw: bytes) -> Found:
    """Ours name the class of an unknown notary, not its tag: its detail is None."""
    found: Found = []
    for a in describe(raw).attestations:
        if a.kind == "bitcoin":
            found.append((a.message, "bitcoin", a.height))
        elif a.kind == "pending":
            found.append((a.message, "pending", a.uri))
        else:
            found.append((a.message, "other", None))
    return sorted(found)


def _assert_parses_and_reserialises_byte_for_byte(raw: bytes) -> None:
    ours = parse_proof(raw)
    assert serialise_proof(ours) == raw
    assert _reference_bytes(_reference(raw)) == raw
    assert ours == _reference(raw)


def _assert_the_three_readers_agree(raw: bytes) -> Found:
    """The attestations all three report, with the tags of unknown notaries."""
    reference = _reference_attestations(raw)
    _op, digest, by_hand = hand_decode(raw)
    assert sorted(by_hand) == reference
    assert _our_attestations(raw) == sorted(
        (m, k, d if k != "other" else None) for m, k, d in reference)
    assert digest == describe(raw).digest == bytes(_reference(raw).file_digest)
    return reference


# --------------------------------------------------------------------------- proofs made here


def _counter(label: bytes) -> Callable[[int], bytes]:
    counter = iter(range(1_000_000))

    def randomness(n: int) -> bytes:
        return hashlib.sha256(label + bytes([next(counter)])).digest()[:n]

    return randomness


class Devnet:
    """The embedded local chain, one devnet calendar per URL, and the adapter on both."""

    def __init__(self, base: Path, urls: tuple[str, ...] = (URL,)) -> None:
        self.chain = LocalChain(base / "chain.db")
        self.calendars = [
            Calendar(base / f"calendar{i}.db", self.chain, url=url,
                     randomness=_counter(b"calendar" if i == 0 else b"calendar%d" % i))
            for i, url in enumerate(urls)
        ]
        self.ots = OpenTimestamps(self.chain, Network.REGTEST, self.calendars,
                                  randomness=_counter(b"client"))

    @property
    def calendar(self) -> Calendar:
        return self.calendars[0]

    def confirmed(self, digest: bytes = DIGEST) -> tuple[bytes, CommittedRound]:
        """A proof of ``digest`` upgraded after its calendar committed it in a block."""
        pending = self.ots.stamp(digest)
        committed = self.calendar.flush()
        assert committed is not None
        return self.ots.upgrade(pending), committed

    def header(self, height: int) -> bytes:
        return self.chain.block_header(self.chain.block_hash(height))


@pytest.fixture
def devnet(tmp_path: Path) -> Devnet:
    return Devnet(tmp_path)


def _hand_built(file_hash_op: object, digest: bytes) -> DetachedTimestampFile:
    return DetachedTimestampFile(file_hash_op, Timestamp(digest))


def _every_op(_base: Path) -> bytes:
    detached = _hand_built(OpSHA256(), DIGEST)
    tip = detached.timestamp
    for op in (OpPrepend(b"\x01pre"), OpAppend(b"post"), OpSHA1(), OpRIPEMD160(),
               OpKECCAK256(), OpReverse(), OpHexlify(), OpSHA256()):
        tip = tip.ops.add(op)
    tip.attestations.add(BitcoinBlockHeaderAttestation(700_000))
    tip.attestations.add(PendingAttestation(ALICE))
    return _reference_bytes(detached)


def _sha1_file_hash(_base: Path) -> bytes:
    detached = _hand_built(OpSHA1(), hashlib.sha1(b"model").digest())
    detached.timestamp.ops.add(OpSHA256()).attestations.add(BitcoinBlockHeaderAttestation(1))
    return _reference_bytes(detached)


def _ripemd160_file_hash(_base: Path) -> bytes:
    detached = _hand_built(OpRIPEMD160(), hashlib.new("ripemd160", b"model").digest())
    detached.timestamp.attestations.add(PendingAttestation(BOB))
    return _reference_bytes(detached)


def _merkle_tree(_base: Path) -> bytes:
    leaves = [Timestamp(hashlib.sha256(bytes([i])).digest()) for i in range(5)]
    make_merkle_tree(leaves).attestations.add(BitcoinBlockHeaderAttestation(2**21 + 3))
    return _reference_bytes(DetachedTimestampFile(OpSHA256(), leaves[2]))


def _known_and_unknown_notary(_base: Path) -> bytes:
    detached = _hand_built(OpSHA256(), DIGEST)
    detached.timestamp.attestations.add(UnknownAttestation(OTHER_TAG, b"\x05some-chain"))
    detached.timestamp.ops.add(OpAppend(b"\x00" * 4)).attestations.add(
        BitcoinBlockHeaderAttestation(42))
    return _reference_bytes(detached)


def _unknown_notary_only(_base: Path) -> bytes:
    detached = _hand_built(OpSHA256(), DIGEST)
    detached.timestamp.attestations.add(UnknownAttestation(OTHER_TAG, b"payload"))
    return _reference_bytes(detached)


def _devnet_pending(base: Path) -> bytes:
    return Devnet(base).ots.stamp(DIGEST)


def _devnet_two_calendars(base: Path) -> bytes:
    return Devnet(base, (ALICE, BOB)).ots.stamp(DIGEST)


def _devnet_confirmed(base: Path) -> bytes:
    return Devnet(base).confirmed()[0]


SELF_MADE: dict[str, tuple[Callable[[Path], bytes], list[str]]] = {
    "devnet-pending": (_devnet_pending, ["pending"]),
    "devnet-two-calendars": (_devnet_two_calendars, ["pending", "pending"]),
    "devnet-confirmed": (_devnet_confirmed, ["bitcoin", "pending"]),
    "every-op": (_every_op, ["bitcoin", "pending"]),
    "sha1-file-hash": (_sha1_file_hash, ["bitcoin"]),
    "ripemd160-file-hash": (_ripemd160_file_hash, ["pending"]),
    "merkle-tree": (_merkle_tree, ["bitcoin"]),
    "known-and-unknown-notary": (_known_and_unknown_notary, ["bitcoin", "other"]),
    "unknown-notary-only": (_unknown_notary_only, ["other"]),
}


@pytest.mark.parametrize("name", SELF_MADE)
def test_self_made_proofs_parse_and_reserialise_byte_for_byte(name: str, tmp_path: Path) -> None:
    make, _kinds = SELF_MADE[name]
    _assert_parses_and_reserialises_byte_for_byte(make(tmp_path))


@pytest.mark.parametrize("name", SELF_MADE)
def test_self_made_proofs_report_the_same_attestations_in_the_reference_ours_and_by_hand(
    name: str, tmp_path: Path
) -> None:
    make, kinds = SELF_MADE[name]
    found = _assert_the_three_readers_agree(make(tmp_path))
    assert sorted(kind for _m, kind, _d in found) == kinds


def test_the_hand_decoder_follows_every_op_to_the_message_the_reference_attests() -> None:
    raw = _every_op(Path())
    m = DIGEST
    for step in (lambda m: b"\x01pre" + m, lambda m: m + b"post", _UNARY[0x02], _UNARY[0x03],
                 _UNARY[0x67], _UNARY[0xF2], _UNARY[0xF3], _UNARY[0x08]):
        m = step(m)
    assert hand_decode(raw)[2] == [(m, "bitcoin", 700_000), (m, "pending", ALICE)]


def test_a_devnet_block_commits_the_attested_message_as_its_merkle_root(devnet: Devnet) -> None:
    proof, committed = devnet.confirmed()
    (bitcoin,) = [a for a in describe(proof).attestations if a.kind == "bitcoin"]
    header = BlockHeader.parse(devnet.header(committed.height))
    assert bitcoin.height == committed.height
    assert header.merkle_root == bitcoin.message, "internal byte order, as in the header"
    assert header.meets_target(compact_to_target(header.bits))
    assert compact_to_target(header.bits) <= Network.REGTEST.pow_limit
    assert compact_to_target(header.bits) > Network.MAIN.pow_limit


# --------------------------------------------------------------------------- verdicts


def test_a_proof_for_another_digest_is_a_digest_mismatch_naming_both(devnet: Devnet) -> None:
    proof, _ = devnet.confirmed()
    other = hashlib.sha256(b"Hello World?\n").digest()
    verdict = devnet.ots.verify(proof, other)
    assert verdict.failure is FailureReason.DIGEST_MISMATCH
    assert DIGEST.hex() in verdict.detail and other.hex() in verdict.detail


def test_a_proof_whose_path_misses_the_blocks_merkle_root_is_bad_header(devnet: Devnet) -> None:
    devnet.chain.mine()
    detached = _hand_built(OpSHA256(), DIGEST)
    detached.timestamp.ops.add(OpAppend(b"nonce")).ops.add(OpSHA256()).attestations.add(
        BitcoinBlockHeaderAttestation(1))
    verdict = devnet.ots.verify(_reference_bytes(detached), DIGEST)
    assert verdict.failure is FailureReason.BAD_HEADER
    assert "merkle root" in verdict.detail


def test_a_header_whose_hash_misses_its_target_is_bad_pow(devnet: Devnet) -> None:
    proof, committed = devnet.confirmed()
    header = BlockHeader.parse(devnet.header(committed.height))
    target = compact_to_target(header.bits)
    weak = next(h for n in range(1000) if not (h := _with_nonce(header, n)).meets_target(target))
    verifier = OpenTimestamps(HeaderChain({committed.height: weak.serialize()}), Network.REGTEST)
    verdict = verifier.verify(proof, DIGEST)
    assert verdict.failure is FailureReason.BAD_POW
    assert "above the target" in verdict.detail


def _with_nonce(header: BlockHeader, nonce: int) -> BlockHeader:
    return BlockHeader(header.version, header.prev_hash, header.merkle_root, header.time,
                       header.bits, nonce)


def test_a_chain_that_serves_another_header_for_the_hash_is_bad_header(devnet: Devnet) -> None:
    proof, committed = devnet.confirmed()
    header = devnet.header(committed.height)

    class LyingChain(HeaderChain):
        def block_hash(self, height: int) -> str:
            return "00" * 32

        def block_header(self, block_hash: str) -> bytes:
            return header

    verdict = OpenTimestamps(LyingChain({}), Network.REGTEST).verify(proof, DIGEST)
    assert verdict.failure is FailureReason.BAD_HEADER
    assert "chain said" in verdict.detail


def test_a_block_the_chain_does_not_have_is_unknown_block_naming_its_height(devnet: Devnet) -> None:
    detached = _hand_built(OpSHA256(), DIGEST)
    detached.timestamp.attestations.add(BitcoinBlockHeaderAttestation(465751))
    verdict = devnet.ots.verify(_reference_bytes(detached), DIGEST)
    assert verdict.failure is FailureReason.UNKNOWN_BLOCK
    assert "465751" in verdict.detail


def test_a_pending_proof_is_pending_only_and_names_its_calendars(tmp_path: Path) -> None:
    two = Devnet(tmp_path, (BOB, ALICE))
    verdict = two.ots.verify(two.ots.stamp(DIGEST), DIGEST)
    assert verdict.failure is FailureReason.PENDING_ONLY
    assert verdict.status is ProofStatus.PENDING
    assert verdict.pending_uris == (ALICE, BOB)
    assert ALICE in verdict.detail and BOB in verdict.detail


def test_a_proof_with_only_unknown_notaries_is_unsupported(devnet: Devnet) -> None:
    verdict = devnet.ots.verify(_unknown_notary_only(Path()), DIGEST)
    assert verdict.failure is FailureReason.UNSUPPORTED


def test_an_unknown_notary_beside_a_good_bitcoin_attestation_does_not_stop_it(
    devnet: Devnet
) -> None:
    proof, committed = devnet.confirmed()
    detached = parse_proof(proof)
    detached.timestamp.attestations.add(UnknownAttestation(OTHER_TAG, b"payload"))
    verdict = devnet.ots.verify(serialise_proof(detached), DIGEST)
    assert verdict.ok and verdict.height == committed.height


def test_every_truncation_of_a_proof_is_malformed(devnet: Devnet) -> None:
    proof, _ = devnet.confirmed()
    for end in range(len(proof)):
        verdict = devnet.ots.verify(proof[:end], DIGEST)
        assert verdict.failure is FailureReason.MALFORMED, end


def test_a_proof_with_trailing_bytes_is_malformed(devnet: Devnet) -> None:
    proof, _ = devnet.confirmed()
    with pytest.raises(ProofMalformed):
        parse_proof(proof + b"\x00")
    assert devnet.ots.verify(proof + b"\x00", DIGEST).failure is FailureReason.MALFORMED


_HEAD = len(MAGIC)
MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "bad-major-version": lambda p: p[:_HEAD] + b"\x02" + p[_HEAD + 1:],
    "unfinished-major-version": lambda p: p[:_HEAD] + b"\xff" + p[_HEAD + 1:],
    "bad-magic": lambda p: b"\x01" + p[1:],
    "invalid-file-digest-type": lambda p: p[:_HEAD + 1] + b"\xf3" + p[_HEAD + 2:],
    "exceeds-max-msg-length": lambda p: p[:_HEAD + 34] + b"\xf3" * 8 + p[_HEAD + 34:],
    "unknown-op": lambda p: p[:_HEAD + 34] + b"\x09" + p[_HEAD + 34:],
    "not-a-proof-at-all": lambda p: b"Hello World!\n",
}


@pytest.mark.parametrize("mutation", MUTATIONS)
def test_mutated_proofs_are_malformed_to_us_and_to_the_reference(
    mutation: str, devnet: Devnet
) -> None:
    proof = devnet.ots.stamp(DIGEST)
    _reference(proof)  # the unmutated proof is fine
    bad = MUTATIONS[mutation](proof)
    with pytest.raises(DeserializationError):
        _reference(bad)
    with pytest.raises(ProofMalformed):
        parse_proof(bad)
    assert devnet.ots.verify(bad, DIGEST).failure is FailureReason.MALFORMED


def test_the_file_digest_follows_the_proofs_own_hash_op(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.write_bytes(b"model")
    with target.open("rb") as stream:
        assert digest_of(_sha1_file_hash(tmp_path), stream) == hashlib.sha1(b"model").digest()


def test_our_header_judgement_agrees_with_the_reference_librarys_merkle_check(
    devnet: Devnet
) -> None:
    proof, committed = devnet.confirmed()
    header = devnet.header(committed.height)
    ((msg, attestation),) = [
        (m, a) for m, a in parse_proof(proof).timestamp.all_attestations()
        if isinstance(a, BitcoinBlockHeaderAttestation)
    ]
    reference_time = attestation.verify_against_blockheader(msg, CBlockHeader.deserialize(header))
    assert reference_time == devnet.ots.verify(proof, DIGEST).block_time
    assert reference_time == BlockHeader.parse(header).time
    with pytest.raises(VerificationError, match="merkleroot"):
        attestation.verify_against_blockheader(hashlib.sha256(msg).digest(),
                                               CBlockHeader.deserialize(header))


# --------------------------------------------------------------------------- what we write


def test_a_stamped_proof_is_exactly_the_hand_encoded_bytes_both_ways(devnet: Devnet) -> None:
    proof = devnet.ots.stamp(DIGEST)
    client_nonce, calendar_nonce = _counter(b"client")(16), _counter(b"calendar")(16)
    uri = devnet.calendar.url.encode()
    by_hand = (
        MAGIC + b"\x01" + b"\x08" + DIGEST
        + b"\xf0" + _varbytes(client_nonce) + b"\x08"
        + b"\xf0" + _varbytes(calendar_nonce) + b"\x08"
        + b"\x00" + PENDING_TAG + _varbytes(_varbytes(uri))
    )
    assert proof == by_hand
    assert _reference(by_hand) == parse_proof(proof)
    commitment = hashlib.sha256(
        hashlib.sha256(DIGEST + client_nonce).digest() + calendar_nonce).digest()
    assert hand_decode(by_hand)[2] == [(commitment, "pending", devnet.calendar.url)]


def test_an_upgraded_proof_is_exactly_the_hand_encoded_bytes(devnet: Devnet) -> None:
    digest = hashlib.sha256(b"weights").digest()
    pending = devnet.ots.stamp(digest)
    committed = devnet.calendar.flush()
    assert committed is not None and committed.leaves == 1
    upgraded = devnet.ots.upgrade(pending)
    coinbase = devnet.chain.raw_block(committed.block_hash)[80 + 1:]  # one tx: count 0x01
    at = coinbase.index(committed.root)
    prefix, suffix = coinbase[:at], coinbase[at + 32:]
    pending_item = b"\x00" + PENDING_TAG + _varbytes(_varbytes(devnet.calendar.url.encode()))
    by_hand = (
        pending[:-len(pending_item)]
        + b"\xff" + pending_item
        + b"\xf1" + _varbytes(prefix) + b"\xf0" + _varbytes(suffix) + b"\x08\x08"
        + b"\x00" + BITCOIN_TAG + _varbytes(_varuint(committed.height))
    )
    assert upgraded == by_hand
    header = BlockHeader.parse(devnet.header(committed.height))
    assert (header.merkle_root, "bitcoin", committed.height) in hand_decode(by_hand)[2]


# --------------------------------------------------------------------------- real-world files


@requires_vectors
def test_the_real_world_vectors_are_there() -> None:
    names = {p.name for p in VECTORS.glob("*.ots")}
    assert {"hello-world.txt.ots", "incomplete.txt.ots", "two-calendars.txt.ots"} <= names
    assert len(names) >= 8
    assert len(list((VECTORS / "invalid").glob("*.ots"))) in {0, 3}  # only the client's repo


@pytest.mark.parametrize("name", vector_params())
def test_real_world_proofs_parse_and_reserialise_byte_for_byte(name: str) -> None:
    _assert_parses_and_reserialises_byte_for_byte((VECTORS / name).read_bytes())


@pytest.mark.parametrize("name", vector_params())
def test_real_world_proofs_report_the_same_attestations_in_the_reference_ours_and_by_hand(
    name: str
) -> None:
    assert _assert_the_three_readers_agree((VECTORS / name).read_bytes())


@requires_vectors
def test_hello_world_verifies_at_mainnet_block_358391_at_its_header_time() -> None:
    verifier = OpenTimestamps(HeaderChain({358391: header_358391()}), Network.MAIN)
    proof = (VECTORS / "hello-world.txt.ots").read_bytes()
    with (VECTORS / "hello-world.txt").open("rb") as stream:
        verdict = verifier.verify(proof, digest_of(proof, stream))
    assert verdict.ok
    assert (verdict.height, verdict.block_time) == (358391, 1432827678)
    assert verdict.block_hash == (
        "000000000000000003e892881a8cdcdc117c06d444057c98b6f04a9ee75a2319")


@pytest.mark.parametrize("name", vector_params("invalid"))
def test_invalid_real_world_proofs_are_malformed(name: str) -> None:
    raw = (VECTORS / "invalid" / name).read_bytes()
    with pytest.raises(ProofMalformed):
        parse_proof(raw)
    verdict = OpenTimestamps(HeaderChain({})).verify(raw, b"\0" * 32)
    assert verdict.failure is FailureReason.MALFORMED
