"""Leads as PostgreSQL session advisory locks (SRS-COORD-05): one holder per name; a holder
whose session ends (its process killed, its connection cut) loses the lead, reports the loss,
and a standby asking again takes it. The process-local twin grants every lead.
"""

from __future__ import annotations

from sqlalchemy import text

from owm_adapters.services.singletons import Flag, SingletonJobs
from owm_adapters.storage.memory.leadership import LocalLeadership
from owm_adapters.storage.sql import create_store_engine
from owm_adapters.storage.sql.leadership import AdvisoryLeadership, lead_lock_id


def end_session_holding(url: str, name: str) -> None:
    """What PostgreSQL does when a holder dies: end the session holding the lead ``name``."""
    unsigned = lead_lock_id(name) & 0xFFFF_FFFF_FFFF_FFFF
    engine = create_store_engine(url)
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
                 " AND classid::bigint = :high AND objid::bigint = :low"),
            {"high": unsigned >> 32, "low": unsigned & 0xFFFF_FFFF},
        ).scalars().all()
        assert len(pids) == 1
        conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pids[0]})
        conn.commit()
    engine.dispose()


def test_one_coordinator_holds_a_lead_and_a_standby_takes_it_when_the_session_ends(
    migrated_postgresql_url: str,
) -> None:
    first, second = (AdvisoryLeadership(migrated_postgresql_url) for _ in range(2))
    try:
        assert first.try_hold("payouts") and first.try_hold("payouts")
        assert second.try_hold("fl-rounds")  # another name is another lead
        assert not second.try_hold("payouts")

        first.release()  # a clean shutdown
        assert second.try_hold("payouts")
        assert not first.try_hold("payouts")
    finally:
        first.release()
        second.release()


def test_a_holder_whose_session_is_killed_reports_the_lead_lost_before_taking_it_again(
    migrated_postgresql_url: str,
) -> None:
    holder, standby = (AdvisoryLeadership(migrated_postgresql_url) for _ in range(2))
    try:
        assert holder.try_hold("payouts")
        assert not standby.try_hold("payouts")
        end_session_holding(migrated_postgresql_url, "payouts")

        assert not holder.try_hold("payouts")  # lost: its job must stop, even if it could
        assert standby.try_hold("payouts")  # take the lead again at once: the standby did
    finally:
        holder.release()
        standby.release()


def test_singleton_jobs_move_to_the_standby_when_the_leaders_session_ends(
    migrated_postgresql_url: str,
) -> None:
    leader_flag, standby_flag = Flag(), Flag()
    leader = SingletonJobs(AdvisoryLeadership(migrated_postgresql_url), [("job", leader_flag)],
                           retry_s=0.1)
    standby = SingletonJobs(AdvisoryLeadership(migrated_postgresql_url), [("job", standby_flag)],
                            retry_s=0.1)
    leader.step()
    standby.step()
    assert leader_flag.on and not standby_flag.on

    leader.stop()
    standby.step()

    assert standby_flag.on and not leader_flag.on and standby.leads("job")
    standby.stop()
    assert not standby_flag.on


def test_the_process_local_twin_grants_every_lead() -> None:
    jobs = SingletonJobs(LocalLeadership(), [("a", Flag()), ("b", Flag())])
    jobs.start()
    assert jobs.leads("a") and jobs.leads("b")
    jobs.stop()
    assert not jobs.leads("a")
