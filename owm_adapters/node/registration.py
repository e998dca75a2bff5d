"""Registration with the coordinator and the stake channel it asks for (SRS-NODE-11).

The node's own Lightning node (``[lightning] backend``) signs the registration challenge, which
proves to the coordinator that the node controls the Lightning node in ``[lightning] node_uri``
(SRS-STAKE-01); a coordinator refuses a registration without that signature.

First registration prints the exact channel to open with the treasury: the treasury's URI and
the tier's minimum come from the coordinator's StakeTerms (the ``[lightning] treasury_uri``
setting, when set, overrides the URI). A node without a qualifying channel waits and asks
again; it takes tasks as soon as the channel is confirmed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import attrs

from owm_adapters.node.context import NodeContext, NodeState
from owm_adapters.node.watchers import StakeWatcher
from owm_core.nodes.control_plane import (
    ControlPlaneRefused,
    ControlPlaneUnavailable,
    RegisterReply,
    StakeTermsView,
    StakeView,
)
from owm_core.nodes.tiers import StakeRequirements
from owm_core.ports.control_plane import MessageSigner

log = logging.getLogger(__name__)

REGISTRATION_FILE = "registration.json"
_REQUIRED_SATS = re.compile(r"required_sats=(\d+)|at least (\d+) sat")


def stake_guidance(
    tier: str, required_sats: int, capacity_sat: int, treasury_uri: str, ln_node_uri: str
) -> list[str]:
    """The operator's instructions to open the stake channel (SRS-NODE-11)."""
    missing = max(0, required_sats - capacity_sat)
    lines = [
        f"stake: tier {tier} needs a Lightning channel of at least {required_sats} sat from your "
        f"node to the OWM treasury (now {capacity_sat} sat; {missing} sat missing).",
    ]
    if treasury_uri:
        pubkey, _, address = treasury_uri.partition("@")
        lines += [
            f"  treasury node  {treasury_uri}",
            "  open it from the Lightning node in [lightning] node_uri"
            + (f" ({ln_node_uri.partition('@')[0][:16]}…)" if ln_node_uri else "") + ":",
            f"    LND:  lncli openchannel --node_key {pubkey}"
            + (f" --connect {address}" if address else "") + f" --local_amt {required_sats}",
            f"    CLN:  lightning-cli fundchannel {treasury_uri} {required_sats}",
        ]
    else:
        lines.append(
            "  set [lightning] treasury_uri in owm.toml (published by your coordinator) to see "
            "the exact command"
        )
    lines.append("  the node takes tasks as soon as the channel is confirmed; no restart needed.")
    return lines


@attrs.define(eq=False)
class Registration:
    """Registers the node, retrying while the coordinator is unreachable or the stake missing."""

    ctx: NodeContext
    stake: StakeWatcher
    data_dir: Path
    ln_signer: MessageSigner | None = None
    reply: RegisterReply | None = attrs.field(init=False, default=None)
    guided: bool = attrs.field(init=False, default=False)
    _terms: StakeTermsView | None = attrs.field(init=False, default=None)

    def register_until_done(self) -> bool:
        """Register; False when ``stop`` was set first.

        Raises ControlPlaneRefused when the coordinator refuses the registration itself
        (cooldown, rate limit, bad manifest): retrying would not help.
        """
        ctx = self.ctx
        attempt = 0
        while not ctx.stop.is_set():
            try:
                reply = ctx.control.register(
                    ctx.identity,
                    ctx.manifest_envelope(),
                    ctx.manifest.digest(),
                    ctx.settings.ln_node_uri,
                    ctx.settings.onion_address,
                    self.ln_signer,
                )
            except ControlPlaneUnavailable as exc:
                ctx.disconnected(exc.message)
                if attempt == 0:
                    ctx.note(f"coordinator unreachable, retrying: {exc.message}",
                             level=logging.WARNING, error=exc.message)
                ctx.stop.wait(ctx.backoff(attempt))
                attempt += 1
                continue
            except ControlPlaneRefused as exc:
                if exc.status != "insufficient-stake":
                    raise
                self._await_stake(exc)
                continue
            self.reply = reply
            ctx.reconnected("register")
            ctx.last_error = ""
            ctx.last_heartbeat_at = ctx.clock.now()
            self._on_registered(reply)
            return True
        return False

    def _await_stake(self, refusal: ControlPlaneRefused) -> None:
        """No qualifying stake channel yet: guide the operator once, then look again later."""
        ctx = self.ctx
        ctx.connected = True
        ctx.last_error = refusal.message
        ctx.state = NodeState.AWAITING_STAKE
        tier = ctx.manifest.tier
        terms = self.stake_terms()
        found = _REQUIRED_SATS.search(refusal.reason)
        if terms is not None:
            required = terms.required_sats
        elif found:  # a coordinator without StakeTerms: read the minimum off the refusal
            required = int(found.group(1) or found.group(2))
        else:
            required = StakeRequirements().for_tier(tier).min_sats
        with ctx.lock:
            ctx.stake = StakeView("none", tier.value, required, 0, "", 0)
        if not self.guided:
            self.guide(tier.value, required, 0)
        ctx.stop.wait(ctx.settings.stake_retry_s)
        ctx.state = NodeState.REGISTERING

    def _on_registered(self, reply: RegisterReply) -> None:
        ctx = self.ctx
        marker = self.data_dir / REGISTRATION_FILE
        first = not marker.exists()
        ctx.note(
            f"registered  node {reply.node_id}  tier {reply.tier}  stake {reply.stake_status} "
            f"({reply.capacity_sat}/{reply.required_sats} sat)",
            node_id=reply.node_id, tier=reply.tier, stake=reply.stake_status,
            capacity_sat=reply.capacity_sat, required_sats=reply.required_sats,
        )
        ctx.stake = StakeView(reply.stake_status, reply.tier, reply.required_sats,
                              reply.capacity_sat, "", 0)
        short = reply.stake_status != "active" or reply.capacity_sat < reply.required_sats
        if short and (first or not self.guided):
            self.guide(reply.tier, reply.required_sats, reply.capacity_sat)
        self.stake.check_capacity(reply.capacity_sat, reply.required_sats)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({
            "node_id": reply.node_id, "tier": reply.tier,
            "first_registered_at": ctx.clock.now(),
        }))

    def stake_terms(self) -> StakeTermsView | None:
        """The coordinator's stake terms for this node's tier (SRS-NODE-11); None if unknown.

        Asked once and remembered; callable before registration.
        """
        if self._terms is None:
            try:
                self._terms = self.ctx.control.stake_terms(self.ctx.manifest.tier.value)
            except (ControlPlaneUnavailable, ControlPlaneRefused) as exc:
                log.info("stake terms unavailable: %s", exc.message,
                         extra={"node_id": self.ctx.identity.node_id, "error": exc.message})
        return self._terms

    def guide(self, tier: str, required: int, capacity: int) -> None:
        """Print the stake channel to open (:func:`stake_guidance`)."""
        ctx = self.ctx
        self.guided = True
        terms = self.stake_terms() if tier == ctx.manifest.tier.value else None
        treasury_uri = ctx.settings.treasury_uri or (terms.treasury_node_uri if terms else "")
        for line in stake_guidance(tier, required, capacity, treasury_uri,
                                   ctx.settings.ln_node_uri):
            ctx.note(line, tier=tier, required_sats=required, capacity_sat=capacity)


__all__ = ["REGISTRATION_FILE", "Registration", "stake_guidance"]
