"""The signed FL update a node uploads: wire format, validation and signature binding."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.fl.participants import update_digest, update_statement
from owm_core.fl.updates import (
    SignedUpdate,
    check_examples,
    parse_update,
    read_claim,
    sign_update,
)
from owm_core.identity.keys import Identity

NODE = Identity.from_seed(b"\x01" * 32)
OTHER = Identity.from_seed(b"\x02" * 32)


def body(round_number: int = 3, weights: list[float] | None = None) -> dict[str, object]:
    return sign_update(
        NODE,
        round_number=round_number,
        sub_model="owm-base",
        task_id="t-1.r0",
        num_examples=64,
        loss=0.5,
        weights=weights if weights is not None else [0.25, -1.5, 3.0],
    )


def test_a_signed_update_survives_json_and_parses_back_to_the_same_values() -> None:
    wire = json.loads(json.dumps(body()))
    update = parse_update(wire)
    assert update.node_id == NODE.node_id
    assert update.round == 3 and update.task_id == "t-1.r0" and update.num_examples == 64
    assert update.tensor.tolist() == [0.25, -1.5, 3.0]
    assert update.to_body() == wire


def test_the_signature_is_over_the_round_node_id_float32_digest_and_example_count() -> None:
    wire = body()
    digest = update_digest(torch.tensor(wire["weights"], dtype=torch.float32))
    statement = update_statement(3, NODE.node_id, digest, 64)
    NODE.verify(statement, bytes.fromhex(str(wire["signature"])))
    update = parse_update(wire)
    assert update.statement == statement and update.examples_signed


@settings(max_examples=40, deadline=None)
@given(claimed=st.integers(min_value=1, max_value=10**9).filter(lambda n: n != 64))
def test_an_inflated_example_count_breaks_the_signature(claimed: int) -> None:
    """FedAvg and Multi-Krum weigh an update by ``num_examples``: a relay, or the node after
    signing, cannot change it without the signature failing (SRS-SEC-05)."""
    wire = {**body(), "num_examples": claimed}
    with pytest.raises(InvalidValue) as refused:
        parse_update(wire)
    assert refused.value.field == "signature"


@settings(max_examples=200)
@given(
    claimed=st.one_of(
        st.integers(-5, 10**10), st.floats(allow_nan=True), st.booleans(), st.none(), st.text()
    ),
    bound=st.integers(1, 10**9),
)
def test_an_example_count_is_accepted_exactly_when_an_integer_from_one_to_the_bound(
    claimed: object, bound: int
) -> None:
    """The rule both FL paths (coordinator rounds, Flower) weigh updates under (SRS-SEC-05)."""
    valid = type(claimed) is int and 1 <= claimed <= bound
    if valid:
        assert check_examples(claimed, bound, "num-examples") == claimed
    else:
        with pytest.raises(InvalidValue) as refused:
            check_examples(claimed, bound, "num-examples")
        assert refused.value.field == "num-examples"


def test_an_older_clients_update_signed_without_the_example_count_is_still_accepted() -> None:
    """v1 statements (round, node, weights) stay valid: the upload is marked as such, and its
    count is held to the round's assignment like every count (rounds.admit)."""
    weights = [0.25, -1.5, 3.0]
    digest = update_digest(torch.tensor(weights, dtype=torch.float32))
    legacy = update_statement(3, NODE.node_id, digest)
    wire = {**body(weights=weights), "num_examples": 500, "signature": NODE.sign(legacy).hex()}
    update = parse_update(wire)
    assert not update.examples_signed and update.num_examples == 500
    assert update.statement == legacy  # the evidence hash is what the node signed


weights_lists = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, width=32), min_size=1, max_size=40
)


@settings(max_examples=40, deadline=None)
@given(weights=weights_lists, index=st.integers(min_value=0), delta=st.sampled_from([1.0, -0.5]))
def test_changing_any_weight_breaks_the_signature(
    weights: list[float], index: int, delta: float
) -> None:
    wire = body(weights=weights)
    changed = list(wire["weights"])  # type: ignore[call-overload]
    i = index % len(changed)
    changed[i] = changed[i] + delta if abs(changed[i]) < 1e5 else changed[i] * 0.5 + delta
    wire["weights"] = changed
    with pytest.raises(InvalidValue) as err:
        parse_update(wire)
    assert err.value.field == "signature"


@settings(max_examples=25, deadline=None)
@given(signed_round=st.integers(0, 10**9), other_round=st.integers(0, 10**9))
def test_an_update_signed_for_one_round_does_not_verify_in_another(
    signed_round: int, other_round: int
) -> None:
    wire = body(round_number=signed_round)
    wire["round"] = other_round
    if other_round == signed_round:
        assert parse_update(wire).round == signed_round
    else:
        with pytest.raises(InvalidValue, match="signature"):
            parse_update(wire)


def test_another_nodes_key_cannot_claim_an_update() -> None:
    wire = body()
    wire["public_key"] = OTHER.public_key_hex
    with pytest.raises(InvalidValue, match="signature"):
        parse_update(wire)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("round", -1, "round"),
        ("round", True, "round"),
        ("sub_model", "Not A Slug", "sub_model"),
        ("task_id", "", "task_id"),
        ("public_key", "xyz", "public_key"),
        ("num_examples", 0, "num_examples"),
        ("loss", "low", "loss"),
        ("loss", float("nan"), "loss"),
        ("weights", [], "weights"),
        ("weights", [1.0, "a"], "weights[1]"),
        ("weights", [1.0, float("inf")], "weights[1]"),
        ("weights", [1e39], "weights"),
        ("signature", "00", "signature"),
    ],
)
def test_a_malformed_field_is_refused_by_name(field: str, value: object, named: str) -> None:
    wire = body()
    wire[field] = value
    with pytest.raises(InvalidValue) as err:
        parse_update(wire)
    assert err.value.field == named


def test_missing_and_unknown_fields_are_refused_by_name() -> None:
    wire = body()
    del wire["loss"]
    with pytest.raises(InvalidValue) as err:
        parse_update(wire)
    assert err.value.field == "loss"
    wire = body()
    wire["extra"] = 1
    with pytest.raises(InvalidValue) as err:
        parse_update(wire)
    assert err.value.field == "extra"


def test_a_signed_update_cannot_be_built_with_a_forged_signature() -> None:
    update = parse_update(body())
    with pytest.raises(InvalidValue, match="signature"):
        SignedUpdate(
            round=update.round,
            sub_model=update.sub_model,
            task_id=update.task_id,
            public_key=update.public_key,
            num_examples=update.num_examples,
            loss=update.loss,
            weights=update.weights,
            signature="ab" * 64,
        )


@given(round_number=st.integers(0, 10**9), weights=weights_lists)
def test_the_claim_of_a_valid_upload_is_what_the_verified_update_holds(
    round_number: int, weights: list[float]
) -> None:
    wire = body(round_number, weights)
    claim, update = read_claim(wire), parse_update(wire)
    assert (claim.round, claim.task_id, claim.public_key, claim.node_id, claim.parameters) == (
        update.round, update.task_id, update.public_key, update.node_id, update.parameters
    )


def test_a_claim_is_read_without_looking_at_the_weights_values() -> None:
    wire = body()
    wire["weights"] = ["not a number"] * 1_000
    claim = read_claim(wire)
    assert claim.parameters == 1_000 and claim.node_id == NODE.node_id


@pytest.mark.parametrize(
    ("field", "value"),
    [("round", -1), ("round", "3"), ("task_id", ""), ("public_key", "xyz"), ("weights", []),
     ("weights", "1,2")],
)
def test_a_malformed_claimed_field_is_refused_by_name(field: str, value: object) -> None:
    wire = body()
    wire[field] = value
    with pytest.raises(InvalidValue) as err:
        read_claim(wire)
    assert err.value.field == field
