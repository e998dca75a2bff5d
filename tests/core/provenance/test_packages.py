"""Release packages are accepted only when their archive, signatures and OTS proof all check out
(SRS 4.1: the node self-updates via signed, OTS-verified release packages)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.identity.keys import Identity
from owm_core.provenance.packages import (
    RELEASE_DOMAIN,
    ReleaseManifest,
    ReleaseRefusal,
    ReleaseSignature,
    sign_release,
    signatures_from_json,
    signatures_to_json,
    signing_message,
    verify_release,
)
from owm_core.provenance.versions import FailureReason, Verification

ARCHIVE = b"owm-0.2.0 wheel bytes"
ALICE = Identity.from_seed(b"\x01" * 32)
BOB = Identity.from_seed(b"\x02" * 32)
MALLORY = Identity.from_seed(b"\x03" * 32)
TRUSTED = [ALICE.public_key_hex, BOB.public_key_hex]


def manifest(archive: bytes = ARCHIVE, **changes: object) -> ReleaseManifest:
    values: dict[str, object] = {"version": "0.2.0",
                                 "archive_sha256": hashlib.sha256(archive).hexdigest(),
                                 "created_at": 1_800_000_000, "notes": "fixes"}
    values.update(changes)
    return ReleaseManifest(**values)  # type: ignore[arg-type]


def signed(m: ReleaseManifest, *who: Identity) -> list[ReleaseSignature]:
    return [ReleaseSignature(i.public_key_hex, sign_release(i, m)) for i in who]


def confirmed(m: ReleaseManifest) -> Verification:
    return Verification.confirmed(m.digest, 840_000, 1_713_000_000, "00" * 32)


def judge(m: ReleaseManifest, sigs, archive: bytes = ARCHIVE, proof=None, threshold=1,
          trusted=TRUSTED):
    return verify_release(hashlib.sha256(archive).hexdigest(), m, sigs, trusted,
                          proof if proof is not None else confirmed(m), threshold)


def test_a_release_signed_by_a_trusted_key_and_anchored_in_bitcoin_is_accepted():
    m = manifest()
    verdict = judge(m, signed(m, ALICE))
    assert verdict.ok and verdict.refusal is None
    assert verdict.signers == (ALICE.public_key_hex,)
    assert "block 840000" in verdict.message


def test_the_canonical_encoding_is_sorted_compact_json_and_its_hash_is_the_digest():
    m = manifest()
    assert m.canonical() == (
        b'{"archive_sha256":"' + m.archive_sha256.encode() + b'","created_at":1800000000,'
        b'"name":"owm","notes":"fixes","version":"0.2.0"}'
    )
    assert m.digest == hashlib.sha256(m.canonical()).digest()
    assert signing_message(m) == RELEASE_DOMAIN + m.canonical()
    assert ReleaseManifest.from_json(m.canonical()) == m


def test_a_manifest_file_with_unknown_fields_or_floats_or_another_name_is_refused():
    m = manifest()
    with pytest.raises(InvalidValue, match="unknown fields"):
        ReleaseManifest.from_json(m.canonical()[:-1] + b',"x":1}')
    with pytest.raises(InvalidValue, match="float"):
        ReleaseManifest.from_json(m.canonical().replace(b"1800000000", b"1.8e9"))
    with pytest.raises(InvalidValue, match="name"):
        manifest(name="evil")
    with pytest.raises(InvalidValue, match="version"):
        manifest(version="latest")


def test_an_archive_that_does_not_hash_to_the_manifest_is_refused_as_a_digest_mismatch():
    m = manifest()
    verdict = judge(m, signed(m, ALICE), archive=ARCHIVE + b"!")
    assert verdict.refusal is ReleaseRefusal.DIGEST_MISMATCH
    assert verdict.message.startswith("refused: digest_mismatch: ")


def test_a_signature_by_an_untrusted_key_never_counts():
    m = manifest()
    verdict = judge(m, signed(m, MALLORY, MALLORY))
    assert verdict.refusal is ReleaseRefusal.UNTRUSTED_SIGNER
    assert MALLORY.public_key_hex in verdict.detail and verdict.signers == ()


def test_a_trusted_key_s_signature_over_another_manifest_is_a_bad_signature():
    m = manifest()
    other = manifest(version="0.2.1")
    verdict = judge(m, signed(other, ALICE))
    assert verdict.refusal is ReleaseRefusal.BAD_SIGNATURE


def test_duplicate_signatures_by_one_key_count_once_toward_the_threshold():
    m = manifest()
    verdict = judge(m, signed(m, ALICE, ALICE, ALICE), threshold=2)
    assert verdict.refusal is ReleaseRefusal.NOT_ENOUGH_SIGNERS
    assert "1 of the 2" in verdict.detail
    assert judge(m, signed(m, ALICE, BOB), threshold=2).ok


def test_a_node_that_trusts_no_release_key_refuses_every_release():
    m = manifest()
    verdict = judge(m, signed(m, ALICE), trusted=[])
    assert verdict.refusal is ReleaseRefusal.NO_TRUSTED_KEYS
    with pytest.raises(InvalidValue, match="threshold"):
        judge(m, signed(m, ALICE), threshold=0)


def test_a_pending_proof_refuses_with_proof_pending():
    m = manifest()
    pending = Verification.failed(m.digest, FailureReason.PENDING_ONLY,
                                  "only pending attestations from http://cal", ["http://cal"])
    verdict = judge(m, signed(m, ALICE), proof=pending)
    assert verdict.refusal is ReleaseRefusal.PROOF_PENDING


def test_a_failed_proof_refuses_with_its_precise_reason():
    m = manifest()
    bad = Verification.failed(m.digest, FailureReason.BAD_POW, "block 7: hash above target")
    verdict = judge(m, signed(m, ALICE), proof=bad)
    assert verdict.refusal is ReleaseRefusal.PROOF_FAILED
    assert verdict.detail == "bad_pow: block 7: hash above target"


def test_a_confirmed_proof_of_another_digest_does_not_vouch_for_this_manifest():
    m = manifest()
    verdict = judge(m, signed(m, ALICE), proof=confirmed(manifest(version="9.9.9")))
    assert verdict.refusal is ReleaseRefusal.PROOF_FAILED
    assert verdict.detail.startswith("digest_mismatch")


def test_signatures_round_trip_through_their_file_form():
    m = manifest()
    sigs = signed(m, ALICE, BOB)
    assert signatures_from_json(signatures_to_json(sigs)) == tuple(sigs)
    with pytest.raises(InvalidValue):
        signatures_from_json(b'[{"signer":"ab"}]')


@settings(max_examples=60, deadline=None)
@given(data=st.data(), part=st.sampled_from(["archive", "manifest", "signature"]))
def test_any_byte_change_to_the_package_manifest_or_signature_refuses(data, part):
    m = manifest()
    sigs = signed(m, ALICE)
    archive, sig_bytes, canonical = ARCHIVE, bytes.fromhex(sigs[0].signature), m.canonical()
    target = {"archive": archive, "manifest": canonical, "signature": sig_bytes}[part]
    index = data.draw(st.integers(0, len(target) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = target[:index] + bytes([target[index] ^ flip]) + target[index + 1:]
    if part == "archive":
        verdict = judge(m, sigs, archive=changed)
    elif part == "signature":
        verdict = judge(m, [ReleaseSignature(ALICE.public_key_hex, changed.hex())])
    else:
        try:
            tampered = ReleaseManifest.from_json(changed)
        except InvalidValue:
            return  # a manifest that no longer parses is refused before any verdict
        # The proof was made for the genuine manifest: the tampered one must not pass.
        verdict = verify_release(hashlib.sha256(archive).hexdigest(), tampered, sigs, TRUSTED,
                                 confirmed(m))
    assert not verdict.ok


@settings(max_examples=40, deadline=None)
@given(seeds=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4),
       trusted_mask=st.lists(st.booleans(), min_size=4, max_size=4),
       repeats=st.integers(1, 3), threshold=st.integers(1, 4))
def test_only_distinct_trusted_signers_count(seeds, trusted_mask, repeats, threshold):
    m = manifest()
    ids = [Identity.from_seed(s) for s in seeds]
    trusted = [i.public_key_hex for i, t in zip(ids, trusted_mask, strict=False) if t]
    sigs = signed(m, *ids) * repeats
    verdict = judge(m, sigs, threshold=threshold, trusted=trusted)
    distinct_trusted = len(set(trusted))
    assert verdict.ok == (distinct_trusted >= threshold and distinct_trusted > 0)
    assert set(verdict.signers) <= set(trusted)
