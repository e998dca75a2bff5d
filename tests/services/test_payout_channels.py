"""The payout-channel worker over the embedded ledger: new nodes get a channel while the
treasury's reserve and daily budget allow, and never a second one (SRS-LN-03)."""

from __future__ import annotations

import time
from pathlib import Path

import attrs

from owm_adapters.bootstrap.settings import CoordinatorLightning, CoordinatorSettings
from owm_adapters.lightning.embedded import SimLedger
from owm_adapters.services.payout_channels import PayoutChannels
from owm_adapters.storage.memory import memory_repositories
from owm_core.errors import LightningUnavailable
from owm_core.identity.keys import Identity
from owm_core.nodes.registry import LnNodeUri, Node
from owm_core.nodes.tiers import Tier
from owm_core.payments.lightning import Channel
from owm_core.payments.payout_channels import (
    CONFIRM_WINDOW_S,
    DAY_S,
    PayoutChannelPolicy,
    day_start,
)
from tests.server.harness import T1_STAKE_SAT
from tests.server.http.world import build_world
from tests.services.governance_world import Clock

T0 = 1_800_000_000


def node(i: int, ln_pubkey: str, **changes: object) -> Node:
    me = Identity.from_seed(bytes([i]) * 32)
    return attrs.evolve(Node(
        node_id=me.node_id, public_key=me.public_key_hex,
        ln_node_uri=LnNodeUri(ln_pubkey, "127.0.0.1", 9735 + i), tier=Tier.T1, vram_mb=0,
        ram_mb=4096, bandwidth_mbps=100, registered_at=T0, last_heartbeat=T0,
    ), **changes)  # fmt: skip


def world(tmp_path: Path, onchain_sat: int, policy: PayoutChannelPolicy):
    ledger = SimLedger(tmp_path / "ln.sqlite3")
    treasury = ledger.add_node("treasury", address="127.0.0.1:9735")
    ledger.fund_onchain(treasury, onchain_sat)
    store = memory_repositories()
    clock = Clock()
    lightning = ledger.lightning("treasury")
    return ledger, store, clock, PayoutChannels(store, lightning, lightning, clock, policy)


def test_each_new_node_gets_one_channel_within_the_daily_budget(tmp_path: Path) -> None:
    ledger, store, clock, channels = world(
        tmp_path, 10_000_000, PayoutChannelPolicy(1_000_000, 500_000, 1_000_000)
    )
    pubkeys = [ledger.add_node(f"n{i}") for i in range(3)]
    for i, pubkey in enumerate(pubkeys, start=1):
        store.nodes.add(node(i, pubkey))
    first = channels.sweep()
    assert len(first) == 2  # 1,000,000 sat a day at 500,000 a channel
    assert channels.sweep() == []  # no second channel, and the day's budget is spent
    clock.t += DAY_S
    (third,) = channels.sweep()
    assert third.node_id not in {o.node_id for o in first}
    for pubkey in pubkeys:
        (opened,) = ledger.lightning("treasury").channels_with(pubkey)
        assert opened.local_balance_sat == 500_000
    assert ledger.onchain_sat(ledger.lightning("treasury").node_pubkey()) == 8_500_000


class Unconfirmed:
    """The treasury's Lightning node as LND and CLN show it while a channel confirms: the
    channel is opened but not listed yet; ``answers=False`` times out instead of answering."""

    def __init__(self, ledger: SimLedger, answers: bool = True) -> None:
        self.lightning = ledger.lightning("treasury")
        self.answers = answers
        self.opened: list[str] = []

    def channels_with(self, peer_pubkey: str) -> list[Channel]:
        return []

    def spendable_onchain_sat(self) -> int:
        return self.lightning.spendable_onchain_sat()

    def open_channel(self, peer_uri: str, amount_sat: int) -> str:
        point = self.lightning.open_channel(peer_uri, amount_sat)
        self.opened.append(peer_uri)
        if not self.answers:
            raise LightningUnavailable("the treasury's Lightning node did not answer in time")
        return point


def test_a_sweep_asks_about_nodes_channels_only_while_the_budget_allows_a_channel(
    tmp_path: Path,
) -> None:
    """Once the day's budget is spent, a sweep over thousands of nodes asks the treasury's
    Lightning node nothing about them (it asked three questions a node before)."""
    ledger, store, clock, _ = world(
        tmp_path, 10_000_000, PayoutChannelPolicy(1_000_000, 500_000, 1_000_000)
    )
    treasury = Unconfirmed(ledger)
    asked: list[str] = []
    listed = treasury.channels_with
    treasury.channels_with = lambda peer: asked.append(peer) or listed(peer)  # type: ignore[method-assign]
    for i in range(5):
        store.nodes.add(node(i + 1, ledger.add_node(f"n{i}")))
    channels = PayoutChannels(store, treasury, treasury, clock,
                              PayoutChannelPolicy(1_000_000, 500_000, 1_000_000))  # fmt: skip
    assert len(channels.sweep()) == 2 and len(asked) == 2  # the budget spent after two
    assert channels.sweep() == [] and len(asked) == 2


def test_a_restart_opens_no_second_channel_while_the_first_confirms_nor_a_new_budget(
    tmp_path: Path,
) -> None:
    ledger, store, clock, _ = world(
        tmp_path, 10_000_000, PayoutChannelPolicy(1_000_000, 500_000, 1_000_000)
    )
    treasury = Unconfirmed(ledger)
    for i in range(3):
        store.nodes.add(node(i + 1, ledger.add_node(f"n{i}")))
    policy = PayoutChannelPolicy(1_000_000, 500_000, 1_000_000)
    assert len(PayoutChannels(store, treasury, treasury, clock, policy).sweep()) == 2
    restarted = PayoutChannels(store, treasury, treasury, clock, policy)
    assert restarted.sweep() == []  # two still confirming, and the day's budget is spent
    clock.t = day_start(clock.t) + DAY_S  # the next day, the first two still confirming
    assert len(restarted.sweep()) == 1
    assert len(treasury.opened) == 3 == len(set(treasury.opened))
    clock.t += CONFIRM_WINDOW_S  # still not listed a window later: offered again
    assert len(restarted.sweep()) == 2


def test_an_open_the_lightning_node_never_answered_is_not_repeated_within_the_window(
    tmp_path: Path,
) -> None:
    ledger, store, clock, _ = world(tmp_path, 10_000_000, PayoutChannelPolicy(0, 500_000, 10**9))
    treasury = Unconfirmed(ledger, answers=False)
    only = node(1, ledger.add_node("a"))
    store.nodes.add(only)
    policy = PayoutChannelPolicy(0, 500_000, 10**9)
    channels = PayoutChannels(store, treasury, treasury, clock, policy)
    assert channels.sweep() == []
    assert channels.sweep() == []
    assert len(treasury.opened) == 1  # funds may have moved: no second try within the window
    recorded = store.payout_channels.get(only.node_id)
    assert recorded is not None and recorded.channel_point == ""


def test_the_reserve_is_never_spent_and_suspended_nodes_get_nothing(tmp_path: Path) -> None:
    ledger, store, _clock, channels = world(
        tmp_path, 1_400_000, PayoutChannelPolicy(1_000_000, 500_000, 10_000_000)
    )
    store.nodes.add(node(1, ledger.add_node("a")))
    store.nodes.add(node(2, ledger.add_node("b"), suspended=True))
    assert channels.sweep() == []
    assert ledger.onchain_sat(ledger.lightning("treasury").node_pubkey()) == 1_400_000


def test_a_node_with_a_treasury_funded_channel_already_is_left_alone(tmp_path: Path) -> None:
    ledger, store, _clock, channels = world(
        tmp_path, 10_000_000, PayoutChannelPolicy(0, 500_000, 10_000_000)
    )
    pubkey = ledger.add_node("a")
    ledger.open_channel(ledger.lightning("treasury").node_pubkey(), pubkey, 200_000)
    store.nodes.add(node(1, pubkey))
    assert channels.sweep() == []


def test_registering_a_node_through_the_api_opens_its_payout_channel(tmp_path: Path) -> None:
    """Wiring: ``[lightning] payout_channel_sat`` turns the worker on; a registration wakes it
    (the sweep period here is an hour, so only the wake-up can explain the channel)."""
    settings = CoordinatorSettings(lightning=CoordinatorLightning(
        payout_channel_sat=300_000, payout_reserve_sat=100_000,
        payout_daily_budget_sat=1_000_000, payout_channel_period_s=3_600,
    ))  # fmt: skip
    for w in build_world(tmp_path, settings=settings):
        assert w.workers is not None
        with w.workers.running():
            time.sleep(0.3)  # the first sweep, before any node, opens nothing
            w.ledger.fund_onchain(w.treasury, 1_000_000)
            node = w.node(stake_sat=0)  # its stake channel is its own: no payout route
            w.ledger.open_channel(node.ln_pubkey, w.treasury, 2 * T1_STAKE_SAT)
            w.register(node)
            deadline = time.monotonic() + 10
            opened: list[object] = []
            while not opened and time.monotonic() < deadline:
                opened = [c for c in w.ledger.lightning("treasury").channels_with(node.ln_pubkey)
                          if c.local_balance_sat == 300_000]
                time.sleep(0.05)
            assert opened, "no payout channel was opened after the registration"
