"""Coordinator-signed task assignments (SRS-SEC-01/03): any change voids the signature."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import SignatureInvalid
from owm_core.identity.assignments import sign_assignment, verify_assignment
from owm_core.identity.keys import Identity
from owm_core.nodes.control_plane import AssignedTask

COORDINATOR = Identity.from_seed(b"c" * 32)
NODE = Identity.from_seed(b"n" * 32)
OTHER = Identity.from_seed(b"o" * 32)
TASK = AssignedTask(
    task_id="job-1:0",
    task_type="inference",
    input_schema_id="owm.inference.text",
    input_schema_version=1,
    price_msat=2_000,
    deadline_at=1_800_000_600,
    input=b'{"prompt": "hello"}',
    assigned_at_ms=1_800_000_000_000,
)


def signed(task: AssignedTask = TASK) -> AssignedTask:
    return attrs.evolve(task, signature=sign_assignment(COORDINATOR, task, NODE.public_key_hex))


def test_an_assignment_signed_by_the_coordinator_for_this_node_verifies() -> None:
    verify_assignment(COORDINATOR.public_key_hex, signed(), NODE.public_key_hex)


def test_an_unsigned_assignment_is_refused() -> None:
    with pytest.raises(SignatureInvalid, match="not signed"):
        verify_assignment(COORDINATOR.public_key_hex, TASK, NODE.public_key_hex)


def test_an_assignment_signed_by_another_key_or_for_another_node_is_refused() -> None:
    forged = attrs.evolve(TASK, signature=sign_assignment(OTHER, TASK, NODE.public_key_hex))
    with pytest.raises(SignatureInvalid):
        verify_assignment(COORDINATOR.public_key_hex, forged, NODE.public_key_hex)
    with pytest.raises(SignatureInvalid):  # replayed to another node
        verify_assignment(COORDINATOR.public_key_hex, signed(), OTHER.public_key_hex)


@given(
    field=st.sampled_from(
        ["task_id", "task_type", "input_schema_id", "input_schema_version", "price_msat",
         "deadline_at", "input", "assigned_at_ms", "model_version"]
    ),
    data=st.data(),
)
def test_changing_any_field_of_a_signed_assignment_voids_its_signature(
    field: str, data: st.DataObject
) -> None:
    original = signed(attrs.evolve(TASK, model_version="owm-v0.1.0"))
    current = getattr(original, field)
    if isinstance(current, bytes):
        new = data.draw(st.binary(max_size=64).filter(lambda v: v != current))
    elif isinstance(current, int):
        new = data.draw(st.integers(0, 2**62).filter(lambda v: v != current))
    elif field == "model_version":
        new = data.draw(st.sampled_from(["", "genesis", "owm-v0.2.0", "owm-v0.1.0-rc1"])
                        .filter(lambda v: v != current))
    else:
        new = data.draw(st.text(min_size=1, max_size=40).filter(lambda v: v != current))
    tampered = attrs.evolve(original, **{field: new})
    with pytest.raises(SignatureInvalid):
        verify_assignment(COORDINATOR.public_key_hex, tampered, NODE.public_key_hex)


@pytest.mark.parametrize("tampered", ["", "genesis", "owm-v0.2.0"])
def test_a_pinned_model_version_is_covered_by_the_signature_so_a_changed_pin_is_refused(
    tampered: str,
) -> None:
    """The pin steers which weights the node runs (SRS-SEC-11): nobody between coordinator and
    node can swap it, nor strip it to make the node answer with its own current version."""
    original = signed(attrs.evolve(TASK, model_version="owm-v0.1.0"))
    verify_assignment(COORDINATOR.public_key_hex, original, NODE.public_key_hex)
    with pytest.raises(SignatureInvalid):
        verify_assignment(COORDINATOR.public_key_hex,
                          attrs.evolve(original, model_version=tampered), NODE.public_key_hex)


def test_an_assignment_without_a_pin_signs_the_same_statement_as_before_pinning() -> None:
    """Statements signed before pins existed (no ``model_version`` key) still verify."""
    from owm_core.identity import coordinator_signed
    from owm_core.identity.assignments import ASSIGNMENT_DOMAIN, assignment_statement
    from owm_core.identity.envelopes import sha256_hex

    before = coordinator_signed.statement(ASSIGNMENT_DOMAIN, {
        "assigned_at_ms": TASK.assigned_at_ms, "deadline_at": TASK.deadline_at,
        "input_schema_id": TASK.input_schema_id,
        "input_schema_version": TASK.input_schema_version,
        "input_sha256": sha256_hex(TASK.input), "price_msat": TASK.price_msat,
        "task_id": TASK.task_id, "task_type": TASK.task_type,
    }, NODE.public_key_hex, "assignment")
    assert assignment_statement(TASK, NODE.public_key_hex) == before
    old_signature = COORDINATOR.sign(before)
    verify_assignment(COORDINATOR.public_key_hex, attrs.evolve(TASK, signature=old_signature),
                      NODE.public_key_hex)


def test_a_payout_request_verifies_only_unchanged_from_the_coordinator_for_its_node() -> None:
    from owm_core.identity.payout_requests import sign_payout_request, verify_payout_request
    from owm_core.payments.invoices import PendingPayout

    payout = PendingPayout(payment_id="ab" * 16, payee_pubkey="02" + "11" * 32,
                           amount_msat=5_000, memo="OWM reward", expiry_s=3_600,
                           requested_at=1_800_000_000)
    signed_payout = sign_payout_request(COORDINATOR, payout, NODE.public_key_hex)
    verify_payout_request(COORDINATOR.public_key_hex, signed_payout, NODE.public_key_hex)
    for forged, recipient in (
        (payout, NODE),  # unsigned
        (attrs.evolve(signed_payout, amount_msat=6_000), NODE),  # changed
        (signed_payout, OTHER),  # another node's
        (sign_payout_request(OTHER, payout, NODE.public_key_hex), NODE),  # another key
    ):
        with pytest.raises(SignatureInvalid):
            verify_payout_request(COORDINATOR.public_key_hex, forged, recipient.public_key_hex)


def test_a_payout_request_signs_the_same_statement_as_when_its_fields_were_listed_by_hand() -> (
    None
):
    """Payout requests signed before the statement was derived from the payout still verify."""
    from owm_core.identity import coordinator_signed
    from owm_core.identity.payout_requests import PAYOUT_REQUEST_DOMAIN, payout_statement
    from owm_core.payments.invoices import PendingPayout

    payout = PendingPayout(payment_id="ab" * 16, payee_pubkey="02" + "11" * 32,
                           amount_msat=5_000, memo="OWM reward", expiry_s=3_600,
                           requested_at=1_800_000_000, signature=b"s" * 64)
    before = coordinator_signed.statement(PAYOUT_REQUEST_DOMAIN, {
        "amount_msat": payout.amount_msat, "expiry_s": payout.expiry_s, "memo": payout.memo,
        "payee_pubkey": payout.payee_pubkey, "payment_id": payout.payment_id,
        "requested_at": payout.requested_at,
    }, NODE.public_key_hex, "payout")
    assert payout_statement(payout, NODE.public_key_hex) == before
