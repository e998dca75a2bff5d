"""Treasury coin selection and the governance roles (SRS-LN-09, SRS-GOV-05)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import InsufficientFunds, InvalidValue
from owm_core.governance.roles import GovernanceRoles, Holder
from owm_core.governance.treasury import DUST_SAT, Utxo, estimated_vbytes, plan_spend
from tests.governance_keys import HOLDERS

coins = st.lists(
    st.builds(
        Utxo,
        st.text("0123456789abcdef", min_size=64, max_size=64),
        st.integers(0, 3),
        st.integers(1, 10**9),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda u: (u.txid, u.vout),
)


@given(utxos=coins, amount=st.integers(1, 2 * 10**9), rate=st.integers(1, 50))
def test_a_plan_spends_exactly_its_inputs_and_pays_at_least_the_asked_fee_rate(
    utxos: list[Utxo], amount: int, rate: int
) -> None:
    try:
        plan = plan_spend(utxos, amount, rate)
    except InsufficientFunds:
        assert sum(u.amount_sat for u in utxos) < amount + rate * estimated_vbytes(len(utxos), 2)
        return
    total = sum(u.amount_sat for u in plan.inputs)
    assert total == plan.amount_sat + plan.fee_sat + plan.change_sat
    outputs = 2 if plan.change_sat else 1
    assert plan.fee_sat >= rate * estimated_vbytes(len(plan.inputs), outputs)
    assert plan.change_sat == 0 or plan.change_sat >= DUST_SAT
    assert set(plan.inputs) <= set(utxos)


def test_a_fee_rate_outside_its_bounds_is_refused_naming_it() -> None:
    with pytest.raises(InvalidValue) as refused:
        plan_spend([Utxo("a" * 64, 0, 10**8)], 1_000, 0)
    assert refused.value.field == "fee_rate_sat_vb"


def test_roles_need_five_distinct_holders_and_ed25519_maintainers() -> None:
    with pytest.raises(InvalidValue, match="exactly 5"):
        GovernanceRoles(maintainers=[], holders=HOLDERS[:4])
    with pytest.raises(InvalidValue, match="share a multisig_key"):
        twin = Holder("f" * 64, HOLDERS[0].multisig_key)
        GovernanceRoles(maintainers=[], holders=[*HOLDERS[:4], twin])
    with pytest.raises(InvalidValue, match="Ed25519"):
        GovernanceRoles(maintainers=["02" + "a" * 64], holders=HOLDERS)
    with pytest.raises(InvalidValue, match="origin"):
        Holder("f" * 64, HOLDERS[0].multisig_key, "m/48h")
