"""The slashing operations' own statuses for ``test_documented_statuses`` (one scenario each)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from owm_adapters.services.slashing import SlashingService
from owm_core.identity import envelopes
from owm_core.identity.envelopes import (
    AckVerdict,
    EnvelopeKind,
    MaintainerAcknowledgement,
    SlashingReversal,
)
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier
from owm_core.stake.slashing import SlashingPolicy
from tests.server.harness import SimNode

MAINTAINERS = [Identity.from_seed(bytes([0x30 + i]) * 32) for i in range(5)]
T2_STAKE_SAT = 1_000_000
SLASHING_COORDINATOR = Identity.from_seed(b"\x3f" * 32)
"""The coordinator the slashing service runs as: acknowledgements are signed for it."""


def _ack(maintainer: Identity, node_id: str) -> Any:
    body = MaintainerAcknowledgement(node_id, "ab" * 32, "fake_proof", AckVerdict.SLASH)
    env = envelopes.seal(maintainer, EnvelopeKind.MAINTAINER_ACK, body, os.urandom(16), 1,
                         audience=SLASHING_COORDINATOR.public_key_hex)
    return json.loads(envelopes.to_bytes(env))


def _with_slashing(probe: Any, maintainers: int = 2) -> SlashingService:
    w = probe.world
    return SlashingService(
        w.repos,
        w.ledger.lightning("treasury", force_close_allowed=True),
        SLASHING_COORDINATOR,
        w.clock,
        SlashingPolicy(maintainer_keys=[m.public_key_hex for m in MAINTAINERS[:maintainers]],
                       coordinator_key=SLASHING_COORDINATOR.public_key_hex),
    )


def _reversal(maintainer: Identity, index: int, node_id: str) -> Any:
    body = SlashingReversal(log_index=index, node_id=node_id)
    env = envelopes.seal(maintainer, EnvelopeKind.SLASHING_REVERSAL, body, os.urandom(16), 1,
                         audience=SLASHING_COORDINATOR.public_key_hex)
    return json.loads(envelopes.to_bytes(env))


def reverse(probe: Any) -> None:
    """201 new, 200 known, 403 not a maintainer or one who acknowledged the slashing, 409 no
    such slashing or reversed already, 503 no service."""
    w = probe.world
    t2 = SimNode.create(tier=Tier.T2)
    w.ledger.open_channel(w.treasury, t2.ln_pubkey, 2 * T2_STAKE_SAT, push_sat=T2_STAKE_SAT)
    w.register(t2)
    probe.send(body=_reversal(MAINTAINERS[2], 0, t2.node_id))  # 503: no slashing service
    slashing = _with_slashing(probe, maintainers=4)
    w.serve(slashing=slashing)
    for maintainer in MAINTAINERS[:2]:  # they acknowledge; 2 and 3 review the appeal
        raw = json.dumps(_ack(maintainer, t2.node_id)).encode()
        outcome = slashing.acknowledge(envelopes.from_bytes(raw))
    assert outcome is not None
    index = outcome.entry.index
    first = _reversal(MAINTAINERS[2], index, t2.node_id)
    probe.send(body=first)
    probe.send(body=first)
    probe.send(body=_reversal(MAINTAINERS[4], index, t2.node_id))  # not a maintainer
    probe.send(body=_reversal(MAINTAINERS[0], index, t2.node_id))  # acknowledged it
    probe.send(body=_reversal(MAINTAINERS[3], index + 7, t2.node_id))  # no such entry
    probe.send(body=_reversal(MAINTAINERS[3], index, t2.node_id))  # reversed
    probe.send(body=_reversal(MAINTAINERS[3], index, t2.node_id))  # already reversed
    w.serve(slashing=None)


def acknowledge(probe: Any) -> None:
    """201 new, 200 known, 403 not a maintainer, 404 unknown node, 409 tier 1, 503 no service."""
    w = probe.world
    t2 = SimNode.create(tier=Tier.T2)
    w.ledger.open_channel(w.treasury, t2.ln_pubkey, 2 * T2_STAKE_SAT, push_sat=T2_STAKE_SAT)
    w.register(t2)
    good = _ack(MAINTAINERS[0], t2.node_id)
    probe.send(body=good)  # 503: this world's coordinator runs no slashing service
    w.serve(slashing=_with_slashing(probe))
    probe.send(body=good)
    probe.send(body=good)
    probe.send(body=_ack(MAINTAINERS[2], t2.node_id))
    probe.send(body=_ack(MAINTAINERS[0], "n" + "0" * 40))
    probe.send(body=_ack(MAINTAINERS[0], probe.ids["me"].node_id))
    w.serve(slashing=None)


def reversal_statements(probe: Any) -> None:
    """200 for a reversed entry (its two statements), 404 for one not reversed."""
    w = probe.world
    t2 = SimNode.create(tier=Tier.T2)
    w.ledger.open_channel(w.treasury, t2.ln_pubkey, 2 * T2_STAKE_SAT, push_sat=T2_STAKE_SAT)
    w.register(t2)
    slashing = _with_slashing(probe, maintainers=4)
    for maintainer in MAINTAINERS[:2]:
        raw = json.dumps(_ack(maintainer, t2.node_id)).encode()
        outcome = slashing.acknowledge(envelopes.from_bytes(raw))
    assert outcome is not None
    index = outcome.entry.index
    probe.send(url=probe.url(log_index=str(index)), headers=w.api_key())  # 404: not reversed
    for maintainer in MAINTAINERS[2:4]:
        slashing.reversals.submit(json.dumps(_reversal(maintainer, index, t2.node_id)).encode())
    reply = probe.send(url=probe.url(log_index=str(index)), headers=w.api_key())
    assert len(reply.json()["statements"]) == 2, reply.text


def pending(probe: Any) -> None:
    """200 with a slashing service, 503 without one."""
    w = probe.world
    probe.send(headers=w.api_key())
    w.serve(slashing=_with_slashing(probe))
    probe.send(headers=w.api_key())
    w.serve(slashing=None)


SLASHING_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "submitSlashingAcknowledgement": acknowledge,
    "pendingSlashingCases": pending,
    "submitSlashingReversal": reverse,
    "slashingReversalStatements": reversal_statements,
}
