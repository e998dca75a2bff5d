"""Field rules shared by the domain's value objects.

attrs validators raise ``TypeError``/``ValueError`` without naming the domain; these raise
:class:`~owm_core.errors.InvalidValue` with the attribute name, so that every shell can tell the
user exactly which field was wrong. Money is integer satoshis or millisatoshis, never float
(floats cannot represent msat amounts exactly); ``bool`` is rejected too since it is an ``int``.
"""

from __future__ import annotations

import enum
import operator
import re
from collections.abc import Callable, Collection
from typing import Any, TypeVar

import attrs

from owm_core.errors import InvalidValue
from owm_core.patterns import LN_PUBKEY as LN_PUBKEY
from owm_core.patterns import SLUG as SLUG

Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_MEMO_MAX_ENTRIES = 1 << 16
"""How many accepted strings one pattern validator remembers before it forgets them all."""
_MEMO_MAX_LEN = 256
"""Longer strings are checked every time (the memo would hold too much text)."""


def _remember(accepted: set[str], value: str) -> None:
    """Remember that ``value`` passed a pure string check, so the next check is a set lookup.

    Values are immutable and the checks are pure functions of them, so a remembered verdict is
    the verdict the check would give again: only the time to reach it changes (ids, keys and
    slugs are checked each time a frozen value holding them is built). Bounded in entries and
    in length so that a long-running process does not grow with every id it ever saw.
    """
    if len(value) <= _MEMO_MAX_LEN:
        if len(accepted) >= _MEMO_MAX_ENTRIES:
            accepted.clear()
        accepted.add(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer(minimum: int | None = None, maximum: int | None = None) -> Validator:
    """An ``int`` (not bool, not float) within optional inclusive bounds."""

    def refuse(attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is not int and not _is_int(value):
            raise InvalidValue(attribute.name, f"must be an integer, got {type(value).__name__}")
        if minimum is not None and value < minimum:
            raise InvalidValue(attribute.name, f"must be ≥ {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise InvalidValue(attribute.name, f"must be ≤ {maximum}, got {value}")

    # The common case (an exact ``int`` within its bounds) is one test per bound, comparing
    # ints with ints; anything else goes to ``refuse``, which raises the reason (an int
    # subclass that is not a bool passes it, as before).
    if minimum is not None and maximum is not None:
        low, high = minimum, maximum

        def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            if type(value) is not int or not low <= value <= high:
                refuse(attribute, value)

    elif minimum is not None:
        low = minimum

        def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            if type(value) is not int or value < low:
                refuse(attribute, value)

    elif maximum is not None:
        high = maximum

        def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            if type(value) is not int or value > high:
                refuse(attribute, value)

    else:

        def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
            if type(value) is not int:
                refuse(attribute, value)

    return check


MAX_MONEY = 21_000_000 * 100_000_000 * 1_000
"""No amount exceeds every bitcoin there will ever be, in msat (2.1e18, below 2**63, so each
fits a signed 64-bit column); in sat it is a looser bound, never a tighter one."""


def money(minimum: int = 0, maximum: int = MAX_MONEY) -> Validator:
    """An amount in sat or msat: an ``int`` from ``minimum`` (0) to ``maximum`` (at most
    :data:`MAX_MONEY`); floats are refused outright, and so is an amount no one could hold,
    so sums of amounts stay within what storage and the Lightning node take."""
    if maximum > MAX_MONEY:
        raise ValueError(f"no amount exceeds {MAX_MONEY} msat")
    return integer(minimum=minimum, maximum=maximum)


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
    accepted: set[str] = set()

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        # ``type(...) is str``: a str subclass may compare equal to a remembered value.
        if type(value) is not str:
            if not isinstance(value, str):
                raise InvalidValue(attribute.name, f"must be text, got {type(value).__name__}")
        elif value in accepted:
            return
        if not min_len <= len(value) <= max_len:
            raise InvalidValue(
                attribute.name, f"length must be in [{min_len}, {max_len}], got {len(value)}"
            )
        if compiled is not None:
            if not compiled.fullmatch(value):
                raise InvalidValue(attribute.name, f"does not match {pattern}")
            if type(value) is str:
                _remember(accepted, value)

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

    accepted: set[str] = set()

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if type(value) is str and value in accepted:
            return
        if not isinstance(value, str):
            raise InvalidValue(attribute.name, f"must be text, got {type(value).__name__}")
        if not pattern.fullmatch(value):
            raise InvalidValue(attribute.name, f"must be {what}")
        if type(value) is str:
            _remember(accepted, value)

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


_T = TypeVar("_T")


@attrs.frozen
class _InitFields:
    """How :func:`evolve` copies one class: its ``__init__`` fields read in one call, the
    keyword of each, the position of each keyword, and whether they may all be passed by
    position (no keyword-only field)."""

    read: Callable[[Any], tuple[Any, ...]]
    aliases: tuple[str, ...]
    positions: dict[str, int]
    positional: bool


_INIT_FIELDS: dict[type, _InitFields] = {}


def _init_fields(cls: type) -> _InitFields:
    """How to read every ``__init__`` field of ``cls`` at once, and the keyword of each."""
    init = [a for a in attrs.fields(cls) if a.init]
    names = [a.name for a in init]
    aliases = tuple(a.alias for a in init)
    read: Callable[[Any], tuple[Any, ...]]
    if not names:
        read = lambda _inst: ()  # noqa: E731 - one of three readers
    elif len(names) == 1:
        single = operator.attrgetter(names[0])
        read = lambda inst: (single(inst),)  # noqa: E731 - one of three readers
    else:
        read = operator.attrgetter(*names)
    positions = {alias: i for i, alias in enumerate(aliases)}
    return _InitFields(read, aliases, positions, not any(a.kw_only for a in init))


def copied(cls: type[_T], source: Any, **given: Any) -> _T:
    """A ``cls`` whose attributes are ``source``'s attributes of the same names, but the
    ``given`` ones: one value seen as another (a port's channel as a stake's), its fields
    listed once, by the class."""
    return cls(
        **{a.name: getattr(source, a.name) for a in attrs.fields(cls) if a.name not in given},  # type: ignore[arg-type]
        **given,
    )


def evolve(inst: _T, **changes: Any) -> _T:
    """A copy of the attrs instance ``inst`` with ``changes``: what ``attrs.evolve`` does.

    Same result and same validation (the class's ``__init__`` runs with every field), but the
    ``__init__`` fields of each class are listed once and read in one call, and passed by
    position where the class allows it, instead of one ``getattr`` and one keyword each: the
    hot state moves (heartbeats, stake re-verification, task and payment states) copy frozen
    values hundreds of thousands of times in a simulated year.
    """
    cls = inst.__class__
    found = _INIT_FIELDS.get(cls)
    if found is None:
        found = _INIT_FIELDS[cls] = _init_fields(cls)
    if found.positional:
        values = list(found.read(inst))
        positions = found.positions
        for name, value in changes.items():
            position = positions.get(name)
            if position is None:
                break  # not a field: the keyword call below raises attrs' TypeError
            values[position] = value
        else:
            return cls(*values)
    keywords = dict(zip(found.aliases, found.read(inst), strict=True))
    keywords.update(changes)
    return cls(**keywords)
