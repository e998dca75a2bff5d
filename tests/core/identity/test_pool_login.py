"""Signing in to the pool with the node identity (SRS-POOL-02): a login verifies for its own
session and node key only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core.errors import SignatureInvalid
from owm_core.identity.keys import Identity
from owm_core.identity.pool_login import parse_login, user_identity, verify_login, worker_name

NODE = Identity.from_seed(b"\x01" * 32)
OTHER = Identity.from_seed(b"\x02" * 32)
SESSION = b"\xab" * 32


def test_a_login_verifies_for_its_node_and_session_and_names_the_worker() -> None:
    login = parse_login(user_identity(NODE, "rig-7", SESSION))
    verify_login(login, NODE.public_key_hex, SESSION)
    assert (login.miner_id, login.worker) == (NODE.node_id, "rig-7")
    assert parse_login(user_identity(NODE, "", SESSION)).miner_id == NODE.node_id


def test_a_login_replayed_on_another_session_does_not_verify() -> None:
    login = parse_login(user_identity(NODE, "rig", SESSION))
    with pytest.raises(SignatureInvalid):
        verify_login(login, NODE.public_key_hex, b"\xcd" * 32)


def test_a_login_for_a_node_id_whose_registered_key_is_anothers_does_not_verify() -> None:
    forged = parse_login(user_identity(OTHER, "rig", SESSION).replace(OTHER.node_id, NODE.node_id))
    with pytest.raises(SignatureInvalid):
        verify_login(forged, OTHER.public_key_hex, SESSION)
    with pytest.raises(SignatureInvalid):
        verify_login(forged, NODE.public_key_hex, SESSION)


@pytest.mark.parametrize(
    "text", ["", "braiins.worker", "n" + "0" * 40 + ".rig.zz", "n" + "0" * 40 + ".a b." + "0" * 128]
)
def test_a_user_identity_not_in_the_owm_form_is_refused(text: str) -> None:
    with pytest.raises(SignatureInvalid):
        parse_login(text)


@given(st.text(max_size=300))
def test_any_user_name_becomes_a_worker_name_a_login_can_carry(user_name: str) -> None:
    worker = worker_name(user_name)
    login = parse_login(user_identity(NODE, worker, SESSION))
    verify_login(login, NODE.public_key_hex, SESSION)
    assert login.worker == worker and len(worker) == min(len(user_name), 64)
    assert len(user_identity(NODE, worker, SESSION)) <= 255  # fits SV2's STR0_255


@pytest.mark.parametrize(
    ("user_name", "worker"),
    [("rig-1", "rig-1"), ("farm.rig_2", "farm-rig_2"), ("bc1q…/s9 #3", "bc1q--s9--3"), ("", "")],
)
def test_a_valid_worker_name_is_kept_and_other_characters_become_dashes(
    user_name: str, worker: str
) -> None:
    assert worker_name(user_name) == worker
