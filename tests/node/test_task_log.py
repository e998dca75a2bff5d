"""The SQLite task log: inputs/outputs hashes, timing and payment status (SRS-NODE-06)."""

from __future__ import annotations

from owm_adapters.node.task_log import TaskLog


def received(log: TaskLog, replica_id: str, price_msat: int = 2_000) -> bool:
    return log.record_received(replica_id, "inference", "owm.inference.text", 1, "ab" * 32, 20,
                               price_msat, 1_800_000_600, 1_000)


def test_an_assignment_is_logged_once_even_when_pushed_again(tmp_path):
    log = TaskLog.in_dir(tmp_path)
    assert received(log, "t1:0") is True
    assert received(log, "t1:0") is False
    row = log.get("t1:0")
    assert row is not None and row.state == "received" and row.input_hash == "ab" * 32


def test_a_proved_task_keeps_its_output_proof_timing_and_payment_status(tmp_path):
    log = TaskLog.in_dir(tmp_path)
    received(log, "t1:0")
    log.mark_running("t1:0", 1_010)
    log.mark_executed("t1:0", "cd" * 32, {"labels": [3]}, b"proof-bytes", 420, 1_500)
    assert log.proof_of("t1:0") == b"proof-bytes"
    log.mark_proved("t1:0", "completed", "pending")
    assert [r.replica_id for r in log.awaiting_payment()] == ["t1:0"]
    log.set_payment("t1:0", "settled", "credited", 2_500)
    row = log.get("t1:0")
    assert row is not None
    assert (row.state, row.output_hash, row.execution_ms, row.started_at_ms, row.finished_at_ms,
            row.payment_status, row.price_msat) == (
        "proved", "cd" * 32, 420, 1_010, 1_500, "credited", 2_500)
    assert log.output_of("t1:0") == {"labels": [3]}
    assert log.awaiting_payment() == []


def test_earnings_sum_credited_pending_and_forfeited_work_and_count_failures(tmp_path):
    log = TaskLog.in_dir(tmp_path)
    for rid, payment in (("a:0", "credited"), ("b:0", "credited"), ("c:0", "pending"),
                         ("d:0", "forfeited")):
        received(log, rid, 1_000)
        log.mark_proved(rid, "settled", payment)
    received(log, "e:0")
    log.mark_failed("e:0", "timed out", 600_000, 2_000)
    received(log, "f:0")
    log.mark_rejected("f:0", "input.prompt: is required", 2_000)
    earned = log.earnings()
    assert (earned.credited_msat, earned.credited_tasks) == (2_000, 2)
    assert (earned.pending_msat, earned.forfeited_msat) == (1_000, 1_000)
    assert (earned.failed_tasks, earned.rejected_tasks) == (1, 1)
    assert log.get("f:0").reason == "input.prompt: is required"


def test_the_log_survives_a_restart(tmp_path):
    log = TaskLog.in_dir(tmp_path)
    received(log, "t1:0")
    log.mark_proved("t1:0", "settled", "credited")
    log.close()
    again = TaskLog.in_dir(tmp_path)
    assert again.earnings().credited_tasks == 1
    assert [r.replica_id for r in again.recent()] == ["t1:0"]
