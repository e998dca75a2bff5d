"""Field rules shared by the domain's value objects.

attrs validators raise ``TypeError``/``ValueError`` without naming the domain; these raise
:class:`~owm_core.errors.InvalidValue` with the attribute name, so that every shell can tell the
user exactly which field was wrong. Money is integer satoshis or millisatoshis, never float
(floats cannot represent msat amounts exactly); ``bool`` is rejected too since it is an ``int``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection
from typing import Any

import attrs

from owm_core.errors import InvalidValue
from owm_core.patterns import LN_PUBKEY as LN_PUBKEY
from owm_core.patterns import SLUG as SLUG

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]



def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    """An ``int`` (not bool, not float) within optional inclusive bounds."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        # ``type(...) is int`` first: the common case, without two isinstance calls.
        if type(value) is not int and not _is_int(value):
            raise InvalidValue(attribute.name, f"must be an integer, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise InvalidValue(attribute.name, f"must be ≥ {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise InvalidValue(attribute.name, f"must be ≤ {maximum}, got {value}")

    return check


def money(minimum: int = 0) -> Validator:
    """An amount in sat or msat: a non-negative ``int`` (floats are refused outright)."""
    return integer(minimum=minimum)


def number(minimum: float | None = None, maximum: float | None = None) -> Validator:
    """A finite real (int or float, not bool) within optional inclusive bounds.

    For measurements such as VRAM or bandwidth, never for money.
    """

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidValue(attribute.name, f"must be a number, got {type(value).__name__}")
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidValue(attribute.name, "must be finite")
        if minimum is not None and value < minimum:
            raise InvalidValue(attribute.name, f"must be ≥ {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise InvalidValue(attribute.name, f"must be ≤ {maximum}, got {value}")

    return check


def text(min_len: int = 1, max_len: int = 10_000, pattern: str | None = None) -> Validator:
    """A ``str`` whose length lies in [min_len, max_len] and that matches ``pattern`` if given."""
    compiled = re.compile(pattern) if pattern is not None else None

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidValue(attribute.name, f"must be text, got {type(value).__name__}")
        if not min_len <= len(value) <= max_len:
            raise InvalidValue(
                attribute.name, f"length must be in [{min_len}, {max_len}], got {len(value)}"
            )
        if compiled is not None and not compiled.fullmatch(value):
            raise InvalidValue(attribute.name, f"does not match {pattern}")

    return check


def raw_bytes(length: int | None = None, max_len: int | None = None) -> Validator:
    """A ``bytes`` value of exactly ``length`` bytes, or at most ``max_len``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, bytes):
            raise InvalidValue(attribute.name, f"must be bytes, got {type(value).__name__}")
        if length is not None and len(value) != length:
            raise InvalidValue(attribute.name, f"must be {length} bytes, got {len(value)}")
        if max_len is not None and len(value) > max_len:
            raise InvalidValue(attribute.name, f"must be at most {max_len} bytes")

    return check


def hex_digest(n_bytes: int = 32) -> Validator:
    """Lower-case hex of exactly ``n_bytes`` bytes (hashes, public keys)."""
    return text(min_len=2 * n_bytes, max_len=2 * n_bytes, pattern=r"[0-9a-f]+")


def one_of(choices: Collection[object]) -> Validator:
    """A member of ``choices`` (enums are validated by ``instance_of`` + this)."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            raise InvalidValue(attribute.name, f"must be one of {sorted(map(str, choices))}")

    return check


def instance_of(kind: type | tuple[type, ...]) -> Validator:
    """An instance of ``kind``; the domain-error twin of ``attrs.validators.instance_of``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, kind):
            raise InvalidValue(attribute.name, f"must be {kind}, got {type(value).__name__}")

    return check


def timestamp() -> Validator:
    """A POSIX time in whole seconds (≥ 0). The core never reads a clock: callers pass ``now``."""
    return integer(minimum=0)


def matches(pattern: re.Pattern[str], what: str) -> Validator:
    """A ``str`` that fully matches ``pattern``; the error says it must be ``what``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not isinstance(value, str):
            raise InvalidValue(attribute.name, f"must be text, got {type(value).__name__}")
        if not pattern.fullmatch(value):
            raise InvalidValue(attribute.name, f"must be {what}")

    return check


def to_enum(kind: type[enum.Enum], field: str, value: object) -> object:
    """Convert an enum's text value (as read off the wire) to its member.

    For attrs converters (mypy's attrs plugin needs them as named functions, so each enum field
    gets a two-line wrapper). Unknown text raises :class:`InvalidValue` naming ``field``;
    anything else passes through unchanged for the field's validator to judge.
    """
    if isinstance(value, str):
        try:
            return kind(value)
        except ValueError:
            raise InvalidValue(field, f"unknown {field} {value!r}") from None
    return value
