"""The node's periodic look-outs: stake capacity and payment status (SRS-NODE-12).

:class:`StakeWatcher` re-checks the stake channel and warns when its capacity falls below the
tier minimum; :class:`PaymentWatcher` asks about proofs still awaiting verification until they
are credited or forfeited.
"""

from __future__ import annotations

import logging

from owm_adapters.node.context import NodeContext
from owm_adapters.node.task_log import TaskLog
from owm_core.coordination.tasks import task_id_of
from owm_core.nodes.control_plane import ControlPlaneRefused, ControlPlaneUnavailable, StakeView

log = logging.getLogger(__name__)


def payment_status_of(state: str) -> str:
    """What a replica's coordinator state means for this node's pay."""
    if state == "settled":
        return "credited"
    if state == "forfeited":
        return "forfeited"
    return "pending"


class StakeWatcher:
    """The stake channel's capacity against the tier minimum (SRS-NODE-12)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def check_capacity(self, capacity_sat: int, required_sats: int) -> None:
        """Warn (once per distinct warning) when ``capacity_sat`` is below the minimum."""
        ctx = self.ctx
        if capacity_sat < required_sats:
            warning = (
                f"stake channel capacity {capacity_sat} sat is below the tier minimum "
                f"{required_sats} sat; top it up or open a new channel (SRS-NODE-12)"
            )
            if warning != ctx.stake_warning:
                ctx.note("warning: " + warning, level=logging.WARNING, capacity_sat=capacity_sat,
                         required_sats=required_sats)
            ctx.stake_warning = warning
        else:
            ctx.stake_warning = ""

    def check_stake(self) -> StakeView | None:
        """Look at the stake now; warn when capacity is below the tier minimum (SRS-NODE-12)."""
        ctx = self.ctx
        try:
            view = ctx.control.stake_status(ctx.identity.public_key_hex)
        except (ControlPlaneUnavailable, ControlPlaneRefused) as exc:
            ctx.last_error = exc.message
            return None
        with ctx.lock:
            ctx.stake = view
        self.check_capacity(view.capacity_sat, view.required_sats)
        return view

    def loop(self) -> None:
        """The ``owm-stake`` thread."""
        self.ctx.every(self.ctx.settings.stake_check_interval_s, self.check_stake)


class PaymentWatcher:
    """Proofs awaiting verification, looked up until credited or forfeited."""

    def __init__(self, ctx: NodeContext, task_log: TaskLog) -> None:
        self.ctx = ctx
        self.log = task_log

    def refresh_payments(self) -> int:
        """Ask the coordinator about proofs still awaiting verification; how many changed."""
        changed = 0
        by_group: dict[str, list[str]] = {}
        for row in self.log.awaiting_payment():
            by_group.setdefault(task_id_of(row.replica_id), []).append(row.replica_id)
        for group, replica_ids in by_group.items():
            try:
                views = {v.replica_id: v for v in self.ctx.control.replicas(group)}
            except (ControlPlaneUnavailable, ControlPlaneRefused):
                continue
            for replica_id in replica_ids:
                view = views.get(replica_id)
                if view is None:
                    continue
                status = payment_status_of(view.state)
                if status != "pending":
                    self.log.set_payment(replica_id, view.state, status, view.price_msat or None)
                    log.info("task %s %s (%s)", replica_id, status, view.state, extra={
                        "node_id": self.ctx.identity.node_id, "task_id": replica_id,
                        "state": view.state, "payment_status": status,
                        "amount_msat": view.price_msat})
                    changed += 1
        return changed

    def loop(self) -> None:
        """The ``owm-payments`` thread."""
        self.ctx.every(self.ctx.settings.payment_check_interval_s, self.refresh_payments)


__all__ = ["PaymentWatcher", "StakeWatcher", "payment_status_of"]
