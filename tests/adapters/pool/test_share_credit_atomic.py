"""An accepted share and its FPPS credits (the miner's 80 % and the treasury's 20 %) are one
write: a crash between them leaves neither, so no credit is lost and the share can be sent
again (SRS-POOL-04, SRS-POOL-08), on the memory twin, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from owm_adapters.chain.local_chain import LocalChain
from owm_adapters.pool.mining import Job, MiningPool, Submission
from owm_core.pool import bitcoin
from owm_core.pool.bitcoin import BlockHeader
from owm_core.pool.fpps import TREASURY_CREDIT_ID, MinerCredit
from owm_core.ports.repositories.pool import MinerCreditRepository
from tests.adapters.pool.test_mining_protocol import MINER, POOL_SCRIPT, FrozenChain
from tests.adapters.storage import test_repositories_contract as contract
from tests.adapters.storage.test_repositories_contract import Backend

pytestmark = pytest.mark.timeout(120)

backend = contract.backend
sqlite_template = contract.sqlite_template

NOW = 1_800_000_000


class CrashingCredits:
    """The store's credit repository, failing the ``fail_at``-th write as a crash would."""

    def __init__(self, inner: MinerCreditRepository, fail_at: int) -> None:
        self.inner, self.fail_at, self.writes = inner, fail_at, 0

    def get(self, miner_id: str) -> MinerCredit | None:
        return self.inner.get(miner_id)

    def list(self, limit: int = 10_000) -> Sequence[MinerCredit]:
        return self.inner.list(limit)

    def put(self, credit: MinerCredit) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise RuntimeError("power cut")
        self.inner.put(credit)


def valid_nonce(pool: MiningPool, job: Job, ntime: int, start: int = 0) -> int:
    """The first nonce from ``start`` whose header meets the channel's target."""
    for nonce in range(start, start + 1_000_000):
        header = BlockHeader(job.version, pool.prev_hash(), job.merkle_root, ntime,
                             pool.template.bits if pool.template else 0, nonce)  # fmt: skip
        if int.from_bytes(bitcoin.double_sha256(header.serialize())[::-1], "big") <= (
            pool.channel_target()
        ):
            return nonce
    raise AssertionError("no nonce found")


@pytest.mark.parametrize("fail_at", [1, 2])
def test_a_crash_between_a_share_and_its_credits_loses_nothing_and_the_share_counts_when_resent(
    backend: Backend, tmp_path: Path, fail_at: int
) -> None:
    repos = backend.repos
    credits = CrashingCredits(repos.miner_credits, fail_at)
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
    pool = MiningPool(chain, repos.shares, lambda: NOW, payout_script=POOL_SCRIPT,
                      credits=credits, atomic=repos.atomic)  # fmt: skip
    pool.refresh()
    job = pool.make_job(1, b"\x00" * 8)
    ntime = job.min_ntime
    nonce = valid_nonce(pool, job, ntime)
    with pytest.raises(RuntimeError, match="power cut"):
        pool.judge(MINER.node_id, job, nonce, ntime, job.version)
    assert repos.shares.since(0) == [] and repos.miner_credits.list() == []
    verdict = pool.judge(MINER.node_id, job, nonce, ntime, job.version)  # the miner sends it again
    assert verdict.accepted is not None and verdict.error_code is None
    assert [s.miner_id for _, s in repos.shares.since(0)] == [MINER.node_id]
    miner, treasury = repos.miner_credits.get(MINER.node_id), repos.miner_credits.get(
        TREASURY_CREDIT_ID
    )
    assert miner is not None and treasury is not None
    # regtest: a share is worth the whole 50 BTC subsidy, 80 % to the miner, 20 % to the treasury
    assert (miner.credited_msat, treasury.credited_msat) == (40 * 10**11, 10 * 10**11)


def test_shares_judged_together_are_stored_with_their_credits_all_or_none(
    backend: Backend, tmp_path: Path
) -> None:
    repos = backend.repos
    credits = CrashingCredits(repos.miner_credits, 1)  # the batch's first credit write fails
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))
    pool = MiningPool(chain, repos.shares, lambda: NOW, payout_script=POOL_SCRIPT,
                      credits=credits, atomic=repos.atomic)  # fmt: skip
    pool.refresh()
    job = pool.make_job(1, b"\x00" * 8)
    nonces = [valid_nonce(pool, job, job.min_ntime)]
    nonces += [valid_nonce(pool, job, job.min_ntime, nonces[-1] + 1)]
    batch = [Submission(MINER.node_id, job, n, job.min_ntime, job.version) for n in nonces]
    with pytest.raises(RuntimeError, match="power cut"):
        pool.judge_batch(batch)
    assert repos.shares.since(0) == [] and repos.miner_credits.list() == []
    verdicts = pool.judge_batch(batch)  # sent again: both accepted, both credited, in one write
    assert [v.credit_msat for v in verdicts] == [40 * 10**11, 40 * 10**11]
    assert len(repos.shares.since(0)) == 2
    miner = repos.miner_credits.get(MINER.node_id)
    assert miner is not None and miner.credited_msat == 2 * 40 * 10**11


def test_rejections_are_stored_so_a_restarted_pool_counts_them_and_a_resent_share_is_duplicate(
    backend: Backend, tmp_path: Path
) -> None:
    repos = backend.repos
    chain = FrozenChain(LocalChain(tmp_path / "chain.db"))

    def started() -> MiningPool:
        pool = MiningPool(chain, repos.shares, lambda: NOW, payout_script=POOL_SCRIPT,
                          credits=repos.miner_credits, atomic=repos.atomic,
                          rejections=backend.reopen().share_rejections)  # fmt: skip
        pool.refresh()
        return pool

    pool = started()
    job = pool.make_job(1, b"\x00" * 8)
    nonce = valid_nonce(pool, job, job.min_ntime)
    assert pool.judge(MINER.node_id, job, nonce, job.min_ntime, job.version).accepted
    for _ in range(2):
        pool.judge(MINER.node_id, job, nonce, job.min_ntime, job.version)  # the same again
    pool.judge(MINER.node_id, job, nonce, job.min_ntime - 1, job.version)  # before the job
    expected = {MINER.node_id: {"duplicate-share": 2, "invalid-timestamp": 1}}
    assert pool.rejections() == expected  # counted before they are written
    assert repos.share_rejections.by_miner() == {}
    assert pool.flush_rejections() == 3 and pool.flush_rejections() == 0
    assert backend.reopen().share_rejections.by_miner() == expected
    again = started()  # the coordinator restarted
    assert again.rejections() == expected
    again.judge(MINER.node_id, job, nonce, job.min_ntime, job.version)
    again.flush_rejections()
    assert backend.reopen().share_rejections.by_miner()[MINER.node_id]["duplicate-share"] == 3


def test_of_two_blocks_sent_in_one_batch_the_second_is_judged_on_the_new_tip_and_counts_no_block(
    backend: Backend, tmp_path: Path
) -> None:
    repos = backend.repos
    chain = LocalChain(tmp_path / "chain.db")
    pool = MiningPool(chain, repos.shares, lambda: NOW, payout_script=POOL_SCRIPT,
                      credits=repos.miner_credits, atomic=repos.atomic)  # fmt: skip
    pool.refresh()
    job = pool.make_job(1, b"\x00" * 8)
    ntime = job.min_ntime
    first = valid_nonce(pool, job, ntime)
    second = valid_nonce(pool, job, ntime, start=first + 1)
    height = chain.tip_height()

    verdicts = pool.judge_batch([
        Submission(MINER.node_id, job, first, ntime, job.version),
        Submission(MINER.node_id, job, second, ntime, job.version),
    ])

    assert verdicts[0].block_hash is not None and verdicts[0].accepted is not None
    assert verdicts[1].error_code == "stale-share" and verdicts[1].block_hash is None
    assert chain.tip_height() == height + 1
    assert repos.shares.blocks_since(0) == 1 and pool.blocks == [verdicts[0].block_hash]
