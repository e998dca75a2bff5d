"""Sealed task inputs and outputs (SRS-SEC-02): only the recipient opens, any change is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.identity.keys import Identity
from owm_core.identity.sealing import (
    HEADER,
    NONCE_BYTES,
    OVERHEAD_BYTES,
    is_sealed,
    open_sealed,
    seal,
)

COORDINATOR = Identity.from_seed(b"\x01" * 32)
NODE = Identity.from_seed(b"\x02" * 32)
OTHER = Identity.from_seed(b"\x03" * 32)
NONCE = b"\x07" * NONCE_BYTES

seeds = st.binary(min_size=32, max_size=32)
plaintexts = st.binary(max_size=512)
nonces = st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES)
contexts = st.text(min_size=1, max_size=40)


def _sealed(plaintext: bytes = b"secret input", context: str = "task-input/t1") -> bytes:
    return seal(
        plaintext,
        sender=COORDINATOR,
        recipient_public_key=NODE.public_key_hex,
        context=context,
        nonce=NONCE,
    )


@given(
    sender_seed=seeds, recipient_seed=seeds, plaintext=plaintexts, nonce=nonces, context=contexts
)
@settings(max_examples=60)
def test_what_one_identity_seals_to_another_opens_to_the_same_bytes(
    sender_seed: bytes, recipient_seed: bytes, plaintext: bytes, nonce: bytes, context: str
) -> None:
    sender, recipient = Identity.from_seed(sender_seed), Identity.from_seed(recipient_seed)
    sealed = seal(
        plaintext,
        sender=sender,
        recipient_public_key=recipient.public_key_hex,
        context=context,
        nonce=nonce,
    )
    assert is_sealed(sealed)
    assert len(sealed) == len(plaintext) + len(context.encode()) + OVERHEAD_BYTES
    opened = open_sealed(
        sealed, recipient=recipient, sender_public_key=sender.public_key_hex, context=context
    )
    assert opened == plaintext


@given(plaintext=st.binary(min_size=16, max_size=128))
@settings(max_examples=40)
def test_the_sealed_form_does_not_contain_the_plaintext(plaintext: bytes) -> None:
    assert plaintext not in _sealed(plaintext)


@given(data=st.data())
@settings(max_examples=200)
def test_changing_any_byte_of_a_sealed_message_makes_it_refused(data: st.DataObject) -> None:
    sealed = bytearray(_sealed())
    index = data.draw(st.integers(0, len(sealed) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    sealed[index] ^= flip
    with pytest.raises(InvalidValue) as refused:
        open_sealed(
            bytes(sealed),
            recipient=NODE,
            sender_public_key=COORDINATOR.public_key_hex,
            context="task-input/t1",
        )
    assert refused.value.field == "sealed"


@given(cut=st.integers(0, 60))
def test_a_truncated_sealed_message_is_refused(cut: int) -> None:
    sealed = _sealed()
    with pytest.raises(InvalidValue):
        open_sealed(
            sealed[: len(sealed) - 1 - cut],
            recipient=NODE,
            sender_public_key=COORDINATOR.public_key_hex,
            context="task-input/t1",
        )


@given(seed=seeds, swap=st.sampled_from(["recipient", "sender"]))
@settings(max_examples=60)
def test_no_key_pair_but_the_one_it_was_sealed_between_opens_a_message(
    seed: bytes, swap: str
) -> None:
    stranger = Identity.from_seed(seed)
    if stranger in (NODE, COORDINATOR):
        return
    recipient = stranger if swap == "recipient" else NODE
    sender = stranger if swap == "sender" else COORDINATOR
    with pytest.raises(InvalidValue, match="does not open"):
        open_sealed(
            _sealed(),
            recipient=recipient,
            sender_public_key=sender.public_key_hex,
            context="task-input/t1",
        )


def test_a_message_sealed_by_another_identity_does_not_pass_for_the_coordinators() -> None:
    forged = seal(
        b"forged input",
        sender=OTHER,
        recipient_public_key=NODE.public_key_hex,
        context="task-input/t1",
        nonce=NONCE,
    )
    with pytest.raises(InvalidValue, match="does not open"):
        open_sealed(
            forged,
            recipient=NODE,
            sender_public_key=COORDINATOR.public_key_hex,
            context="task-input/t1",
        )


def test_a_sealed_input_cannot_be_replayed_as_another_tasks_input() -> None:
    with pytest.raises(InvalidValue, match="another purpose"):
        open_sealed(
            _sealed(),
            recipient=NODE,
            sender_public_key=COORDINATOR.public_key_hex,
            context="task-input/t2",
        )


def test_plain_bytes_and_unknown_versions_are_named_as_such() -> None:
    with pytest.raises(InvalidValue, match="not a sealed message"):
        open_sealed(
            b"{}" * 40, recipient=NODE, sender_public_key=COORDINATOR.public_key_hex, context="x"
        )
    future = HEADER[:-1] + b"\x02" + _sealed()[len(HEADER) :]
    with pytest.raises(InvalidValue, match="unknown version"):
        open_sealed(
            future, recipient=NODE, sender_public_key=COORDINATOR.public_key_hex, context="x"
        )


def test_the_error_names_the_field_the_caller_gives() -> None:
    with pytest.raises(InvalidValue) as refused:
        open_sealed(
            b"plain output",
            recipient=COORDINATOR,
            sender_public_key=NODE.public_key_hex,
            context="task-output/t1",
            field="sealed_output",
        )
    assert refused.value.field == "sealed_output"


def test_errors_carry_no_key_material() -> None:
    messages = []
    attempts: tuple[Callable[[], object], ...] = (
        lambda: open_sealed(
            _sealed(), recipient=OTHER, sender_public_key=COORDINATOR.public_key_hex, context="x"
        ),
        lambda: seal(b"", sender=NODE, recipient_public_key="00" * 32, context="x", nonce=NONCE),
    )
    for attempt in attempts:
        with pytest.raises(InvalidValue) as refused:
            attempt()
        messages.append(str(refused.value))
    for message in messages:
        for identity in (COORDINATOR, NODE, OTHER):
            assert identity.public_key_hex not in message
        assert "00" * 32 not in message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"nonce": b"short"}, "nonce"),
        ({"context": ""}, "context"),
        ({"context": "x" * 256}, "context"),
        ({"recipient_public_key": "zz"}, "public_key"),
        ({"recipient_public_key": "00" * 32}, "public_key"),
    ],
)
def test_bad_sealing_arguments_are_refused_by_name(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {
        "sender": COORDINATOR,
        "recipient_public_key": NODE.public_key_hex,
        "context": "task-input/t1",
        "nonce": NONCE,
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidValue) as refused:
        seal(b"input", **arguments)  # type: ignore[arg-type]
    assert refused.value.field == field
