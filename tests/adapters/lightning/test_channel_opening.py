"""Opening payout channels (SRS-LN-03): the embedded ledger, LND (ConnectPeer + OpenChannel
over gRPC) and CLN (connect + fundchannel over JSON-RPC) behave the same way."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.lightning.channel_opening import opener_for
from owm_core.errors import InsufficientFunds, LightningUnavailable
from owm_core.ports.lightning import ChannelOpener
from tests.adapters.lightning.lightning_contract import BACKENDS, World, lightning_world

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with lightning_world(request.param, tmp_path) as built:
        yield built


def opener(world: World) -> ChannelOpener:
    found = opener_for(world.treasury)
    assert found is not None
    return found


def test_a_channel_is_opened_from_on_chain_funds_to_a_new_peer(world: World) -> None:
    treasury = world.treasury.node_pubkey()
    world.ledger.fund_onchain(treasury, 2_000_000)
    newcomer = world.ledger.add_node("newcomer", address="127.0.0.1:9999")
    channels = opener(world)
    assert channels.spendable_onchain_sat() == 2_000_000
    point = channels.open_channel(f"{newcomer}@127.0.0.1:9999", 500_000)
    (channel,) = world.treasury.channels_with(newcomer)
    assert channel.channel_point == point
    assert channel.capacity_sat == 500_000 and channel.local_balance_sat == 500_000
    assert channels.spendable_onchain_sat() == 1_500_000


def test_a_channel_beyond_the_on_chain_funds_is_refused_and_nothing_opens(world: World) -> None:
    newcomer = world.ledger.add_node("newcomer", address="127.0.0.1:9999")
    with pytest.raises((InsufficientFunds, LightningUnavailable)):
        opener(world).open_channel(f"{newcomer}@127.0.0.1:9999", 500_000)
    assert world.treasury.channels_with(newcomer) == []
