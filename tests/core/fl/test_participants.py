"""Round rules: participant selection, signed update statements, simulated attacks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import ByzantineAssumptionViolated, InvalidValue
from owm_core.fl.aggregation import Rule
from owm_core.fl.attacks import Attack, alie_z, poison
from owm_core.fl.participants import Candidate, select_participants, update_digest, update_statement
from owm_core.identity.keys import Identity
from owm_core.nodes.tiers import Tier


def people(n: int) -> list[Candidate]:
    return [
        Candidate(handle=i, node_id=Identity.from_seed(bytes([i + 1]) * 32).node_id)
        for i in range(n)
    ]


@settings(max_examples=30, deadline=None)
@given(n=st.integers(5, 40), size=st.integers(5, 40), seed=st.binary(min_size=1, max_size=8))
def test_selection_is_a_reproducible_lottery_of_eligible_nodes(n, size, seed):
    pool = people(n)
    chosen = select_participants(pool, round_number=2, seed=seed, size=size, rule=Rule.MEDIAN, f=1)
    again = select_participants(
        list(reversed(pool)), round_number=2, seed=seed, size=size, rule=Rule.MEDIAN, f=1
    )
    assert chosen == again
    assert len(chosen) == min(n, size)
    assert len({c.handle for c in chosen}) == len(chosen)


def test_suspended_and_under_tier_nodes_are_never_selected():
    pool = [
        Candidate(handle=i, tier=Tier.T2 if i < 5 else Tier.T1, suspended=i == 0) for i in range(10)
    ]
    chosen = select_participants(
        pool, round_number=1, seed=b"s", size=10, rule=Rule.MEDIAN, f=1, min_tier=Tier.T2
    )
    assert sorted(c.handle for c in chosen) == [1, 2, 3, 4]


def test_too_few_eligible_nodes_for_the_rule_refuse_the_round():
    with pytest.raises(ByzantineAssumptionViolated):
        select_participants(people(6), round_number=1, seed=b"s", size=6, rule=Rule.KRUM, f=2)


def test_the_signed_statement_binds_round_node_and_every_bit_of_the_update():
    node = people(1)[0].node_id
    u = torch.arange(6, dtype=torch.float32)
    base = update_statement(1, node, update_digest(u))
    v = u.clone()
    v[5] = torch.nextafter(v[5], torch.tensor(100.0))
    assert update_statement(2, node, update_digest(u)) != base
    assert update_statement(1, node, update_digest(v)) != base
    assert update_statement(1, node, update_digest(u.reshape(2, 3))) != base
    assert update_statement(1, node, update_digest(u.numpy())) == base
    with pytest.raises(InvalidValue):
        update_statement(1, "not-a-node", update_digest(u))


@pytest.mark.parametrize("attack", list(Attack))
def test_every_attack_returns_one_update_per_byzantine_client(attack):
    g = torch.Generator().manual_seed(0)
    ref = torch.zeros(8)
    honest = torch.randn(6, 8, generator=g)
    own = torch.randn(2, 8, generator=g)
    out = poison(attack, reference=ref, honest=honest, own=own, generator=g)
    assert out.shape == (2, 8)
    assert torch.isfinite(out).all()


def test_alie_hides_inside_the_honest_spread():
    assert 0 < alie_z(100, 20) < 1
    g = torch.Generator().manual_seed(0)
    honest = torch.randn(80, 50, generator=g)
    out = poison(
        Attack.ALIE, reference=torch.zeros(50), honest=honest, own=torch.zeros(20, 50), generator=g
    )
    assert torch.all(out >= honest.min(dim=0).values)
    assert torch.all(out <= honest.max(dim=0).values)
