"""A pool whose share target is set directly, easier than difficulty 1, on a template whose
blocks are harder than its shares (what ``bench/pool.py`` measures): shares are judged in full
and credited, none is a block (SRS-POOL-06, SRS-PERF-11)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import attrs
import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.mining import Job, MiningPool, Submission
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import InvalidValue
from owm_core.pool import bitcoin
from tests.adapters.pool.test_mining_protocol import MINER, POOL_SCRIPT, FrozenChain

NOW = 1_800_000_000
SHARE_TARGET = (1 << 255) - 1  # a share in about two hashes
DIFFICULTY_1_BITS = 0x1D00FFFF  # a block in about 2**32


def nonces(pool: MiningPool, job: Job, count: int, *, meeting: bool) -> list[int]:
    """The first ``count`` nonces whose header hash meets (or misses) the share target."""
    found = []
    for nonce in range(10_000):
        header = bitcoin.HEADER_STRUCT.pack(
            job.version, pool.prev_hash(), job.merkle_root, job.min_ntime,
            DIFFICULTY_1_BITS, nonce,
        )  # fmt: skip
        value = int.from_bytes(bitcoin.double_sha256(header), "little")
        if (value <= SHARE_TARGET) == meeting:
            found.append(nonce)
            if len(found) == count:
                return found
    raise AssertionError("not enough nonces")


def test_shares_easier_than_difficulty_1_are_judged_credited_and_none_is_a_block(
    tmp_path: Path,
) -> None:
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
    chain.template = attrs.evolve(chain.template, bits=DIFFICULTY_1_BITS)
    repos = memory_repositories()
    pool = MiningPool(chain, repos.shares, lambda: NOW, payout_script=POOL_SCRIPT,
                      share_target=SHARE_TARGET, credits=repos.miner_credits)  # fmt: skip
    pool.refresh()
    assert pool.channel_target() == SHARE_TARGET
    job = pool.make_job(1, b"\x00" * 8)
    good = nonces(pool, job, 3, meeting=True)
    (bad,) = nonces(pool, job, 1, meeting=False)
    sent = [*good, bad, good[0]]
    verdicts = pool.judge_batch(
        [Submission(MINER.node_id, job, n, job.min_ntime, job.version) for n in sent]
    )
    assert [v.error_code for v in verdicts] == [None, None, None, "difficulty-too-low",
                                                "duplicate-share"]  # fmt: skip
    accepted = [v.accepted for v in verdicts[:3]]
    assert all(a is not None and not a.is_block for a in accepted)
    assert {a.credited_difficulty for a in accepted if a} == {
        Fraction(bitcoin.DIFF1_TARGET, SHARE_TARGET)
    }
    assert chain.submitted == [] and pool.blocks == []
    assert len(repos.shares.since(0)) == 3
    credit = repos.miner_credits.get(MINER.node_id)
    assert credit is not None and credit.credited_msat == sum(v.credit_msat for v in verdicts)


@pytest.mark.parametrize("target", [bitcoin.DIFF1_TARGET, 1, 1 << 256, 0])
def test_a_share_target_not_easier_than_difficulty_1_or_over_256_bits_is_refused(
    tmp_path: Path, target: int
) -> None:
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
    with pytest.raises(InvalidValue, match="share_target"):
        MiningPool(chain, memory_repositories().shares, lambda: NOW, payout_script=POOL_SCRIPT,
                   share_target=target)  # fmt: skip
