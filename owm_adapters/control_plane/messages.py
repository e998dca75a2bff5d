"""Values ↔ the control plane's protobuf messages, one rule for the servicer and the client.

A value that crosses the wire (an assignment, a pending payout, stake terms, a challenge) has
attributes named as its message's fields, so one function writes a value into its message and
one reads a message back into a value, instead of a hand-written constructor per message on
each end. Where a name differs, ``renamed`` maps the attribute to its field: the coordinator's
Ed25519 signature is ``signature`` on a value and ``coordinator_signature`` on the wire
(:data:`COORDINATOR_SIGNED`). Enums travel as their ``.value``; the reading value's own
converters and validators turn the text back into them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
from google.protobuf.message import Message

T = TypeVar("T")
M = TypeVar("M", bound=Message)

COORDINATOR_SIGNED: Mapping[str, str] = {"signature": "coordinator_signature"}
"""The rename of the values the coordinator signs for one node (assignments, payouts)."""


def to_message(
    message_type: type[M], value: Any, renamed: Mapping[str, str] | None = None, **given: Any
) -> M:
    """A ``message_type`` holding every field ``value`` has an attribute for (enums as their
    value), and the ``given`` fields as given."""
    wire = dict(renamed or {})
    fields = message_type.DESCRIPTOR.fields_by_name
    copied = {}
    for a in attrs.fields(type(value)):
        field = wire.get(a.name, a.name)
        if field in fields and field not in given:
            attribute = getattr(value, a.name)
            copied[field] = attribute.value if isinstance(attribute, enum.Enum) else attribute
    message: M = message_type(**copied, **given)
    return message


def from_message(
    cls: type[T], message: Message, renamed: Mapping[str, str] | None = None, **given: Any
) -> T:
    """The ``cls`` value whose attributes are ``message``'s fields (every attribute without a
    field keeps its default), and the ``given`` attributes as given."""
    wire = dict(renamed or {})
    fields = message.DESCRIPTOR.fields_by_name
    read = {
        a.name: getattr(message, wire.get(a.name, a.name))
        for a in attrs.fields(cls)  # type: ignore[arg-type]
        if wire.get(a.name, a.name) in fields and a.name not in given
    }
    return cls(**read, **given)
