"""Rows ↔ values: what the SQL repositories decode from and encode into table rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from owm_core.identity.envelopes import Envelope, from_bytes


def envelope_of_row(row: Row[Any]) -> Envelope:
    """The envelope stored whole, as its canonical bytes, in the row's ``envelope`` column."""
    return from_bytes(bytes(row._mapping["envelope"]))
