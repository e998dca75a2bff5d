"""Rows ↔ values: the cattrs machinery every SQL repository maps its rows with.

Un/structuring rules live here, at the storage edge, never on the domain classes. Each
storage context registers the row shape of each value it stores with :func:`register_row`
(in the one converter :func:`to_row` and :func:`from_row` use): which attribute has another
column name, which nested value is stored flat in the row's columns, which columns are
computed from the value, which integers must fit a ``BIGINT``. The storage-wide hooks: enums
travel as their ``.value`` (cattrs' default), tuples of text as JSON text and sets of text as
sorted JSON text (the tables store them so), bytes come back from ``memoryview``/``bytearray``
columns as ``bytes``, and SQLite's integer booleans as ``bool``.

:class:`MappedRepository` is the base of the repositories whose values travel through the
row converter: inserting a value, overwriting it, reading one or many back
(:class:`KeyedRepository` adds, saves and gets values kept under one key column,
:class:`PutRepository` puts and gets the latest value per key; both read the kind of value
from their type argument and the key column from their table's primary key);
:class:`EnvelopeRepository` the base of those that read signed envelopes back.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from sqlalchemy import ColumnElement, Row, Select, Table, func, insert, select, update

from owm_adapters.storage.sql.database import SqlRepository, int64, upsert
from owm_core.errors import Conflict
from owm_core.identity.envelopes import Envelope, from_bytes

log = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
V = TypeVar("V")
TEXTS = tuple[str, ...]
"""Tuples of text (ids, names, licences): stored as a JSON array in one text column."""
TEXT_SET = frozenset[str]
"""Sets of text (settled replica ids): stored as a sorted JSON array in one text column."""


@attrs.frozen
class Flat:
    """A nested value stored in its container's row: ``columns`` maps its attributes to
    columns. An optional one is None when the row's first column of it is NULL."""

    field: str
    columns: Mapping[str, str]


@attrs.frozen
class Encoding:
    """How one attribute is stored when its type's storage-wide hook does not fit the column
    (signers joined by commas, say): ``encode`` makes the column value, ``decode`` reads it."""

    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _row_converter() -> cattrs.Converter:
    """A converter with the storage-wide hooks (see the module docstring)."""
    converter = cattrs.Converter()
    converter.register_unstructure_hook_func(lambda t: t == TEXTS, lambda v: json.dumps(list(v)))
    converter.register_structure_hook_func(lambda t: t == TEXTS, lambda v, _: tuple(json.loads(v)))
    converter.register_unstructure_hook_func(
        lambda t: t == TEXT_SET, lambda v: json.dumps(sorted(v))
    )
    converter.register_structure_hook_func(
        lambda t: t == TEXT_SET, lambda v, _: frozenset(json.loads(v))
    )
    converter.register_structure_hook(bytes, lambda v, _: bytes(v))
    return converter


_ROWS = _row_converter()
"""The converter every stored class's row shape is registered in."""
_SHAPED: set[type[Any]] = set()
"""The classes registered so far (each has one row shape)."""


def register_row(
    cls: type[Any],
    *,
    renamed: Mapping[str, str] | None = None,
    flat: Iterable[Flat] = (),
    omitted: Iterable[str] = (),
    computed: Mapping[str, Callable[[Any], Any]] | None = None,
    int64_columns: Iterable[str] = (),
    encoded: Mapping[str, Encoding] | None = None,
) -> None:
    """Teach the row converter the shape of ``cls``.

    ``renamed`` maps attributes to their column names; ``flat`` lists nested values stored
    flat; ``omitted`` attributes are not columns of this row (the caller passes them back to
    :func:`from_row`); ``computed`` adds columns derived from the value; ``int64_columns``
    must fit a ``BIGINT`` (``InvalidValue`` naming the column, before any SQL runs);
    ``encoded`` attributes are stored in their own :class:`Encoding` instead of their type's.
    A class has one row shape: registering it a second time is a programming error.
    """
    if cls in _SHAPED:
        raise TypeError(f"{cls.__name__} already has a row shape")
    _SHAPED.add(cls)
    attrs.resolve_types(cls)
    names = {a.name for a in attrs.fields(cls)}
    column = {name: (renamed or {}).get(name, name) for name in names}
    codecs = dict(encoded or {})
    flats, omitted = tuple(flat), tuple(omitted)
    skipped = {name: override(omit=True) for name in (*omitted, *(f.field for f in flats))}
    overrides: dict[str, Any] = {
        name: override(
            rename=column[name], unstruct_hook=codecs[name].encode if name in codecs else None
        )
        for name in names
    }
    unstructure = make_dict_unstructure_fn(cls, _ROWS, **{**overrides, **skipped})
    read: dict[str, Any] = {
        name: override(
            rename=column[name],
            struct_hook=_decoder(codecs[name]) if name in codecs else None,
        )
        for name in names
    }
    given: dict[str, Any] = {name: override(struct_hook=_as_given) for name in omitted}
    structure = make_dict_structure_fn(cls, _ROWS, **{**read, **given})
    extra = dict(computed or {})
    checked = tuple(int64_columns)

    def to_columns(value: Any) -> dict[str, Any]:
        row = unstructure(value)
        for f in flats:
            nested = getattr(value, f.field)
            for attribute, column in f.columns.items():
                row[column] = (
                    None if nested is None else _ROWS.unstructure(getattr(nested, attribute))
                )
        row.update({column: compute(value) for column, compute in extra.items()})
        for column in checked:
            if row[column] is not None:
                int64(column, row[column])
        return row

    def from_columns(mapping: Mapping[str, Any], _: Any) -> Any:
        values = dict(mapping)
        for f in flats:
            first = next(iter(f.columns.values()))
            values[f.field] = (
                None
                if values[first] is None
                else {attribute: values[column] for attribute, column in f.columns.items()}
            )
        return structure(values, cls)

    _ROWS.register_unstructure_hook(cls, to_columns)
    _ROWS.register_structure_hook(cls, from_columns)


def _decoder(encoding: Encoding) -> Callable[[Any, Any], Any]:
    return lambda value, _: encoding.decode(value)


def _as_given(value: Any, _: Any) -> Any:
    return value


def to_row(value: Any) -> dict[str, Any]:
    """The columns of ``value`` (its shape registered with :func:`register_row`)."""
    row: dict[str, Any] = _ROWS.unstructure(value)
    return row


def from_row(row: Row[Any], cls: type[T], **given: Any) -> T:
    """The ``cls`` value stored in ``row``; ``given`` supplies the omitted attributes, as is."""
    return _ROWS.structure({**row._mapping, **given}, cls)


class EnvelopeRepository(SqlRepository):
    """A SQL repository of signed envelopes, each stored whole as its canonical bytes in an
    ``envelope`` column (so its signature can be checked again when read)."""

    def _envelope(self, query: Select[Any]) -> Envelope | None:
        """The envelope ``query`` (selecting one ``envelope`` column) finds first, or None."""
        with self._db.tx() as conn:
            raw = conn.execute(query).scalar()
        return None if raw is None else from_bytes(bytes(raw))

    def _envelopes(self, query: Select[Any]) -> list[Envelope]:
        """Every envelope ``query`` (selecting one ``envelope`` column) finds, in its order."""
        with self._db.tx() as conn:
            raws = conn.execute(query).scalars().all()
        return [from_bytes(bytes(raw)) for raw in raws]


_UNREADABLE: set[tuple[int, str, int]] = set()
"""The rows :meth:`MappedRepository._readable` has logged: (database, kind, position)."""
_UNREADABLE_KEPT = 10_000
KEYS_AT_ONCE = 500
"""How many keys one ``IN (…)`` of :meth:`MappedRepository._by_keys` names (SQLite takes at
most 32,766 bound values a statement; PostgreSQL plans short lists best)."""


class MappedRepository(SqlRepository):
    """A SQL repository whose values map to rows through the row converter."""

    def _insert(self, table: Table, value: Any) -> None:
        """Store ``value`` as a new row of ``table`` (Conflict when its key is taken)."""
        with self._db.tx(write=True) as conn:
            conn.execute(insert(table).values(to_row(value)))

    def _overwrite(
        self, table: Table, value: Any, missing: str, *where: ColumnElement[bool]
    ) -> None:
        """Overwrite the row matching ``where`` with ``value``; Conflict(``missing``) if none."""
        with self._db.tx(write=True) as conn:
            done = conn.execute(update(table).where(*where).values(to_row(value)))
        if done.rowcount == 0:
            raise Conflict(missing)

    def _first(self, query: Select[Any], cls: type[T]) -> T | None:
        """The ``cls`` value in the first row ``query`` returns, or None."""
        with self._db.tx() as conn:
            row = conn.execute(query).first()
        return None if row is None else from_row(row, cls)

    def _all(self, query: Select[Any], cls: type[T]) -> list[T]:
        """The ``cls`` values in every row ``query`` returns, in its order."""
        with self._db.tx() as conn:
            rows = conn.execute(query).all()
        return [from_row(r, cls) for r in rows]

    def _positioned(
        self, page: Callable[[int, int], Select[Any]], after: int, limit: int, cls: type[T]
    ) -> list[tuple[int, T]]:
        """A sweep's keyset page: up to ``limit`` rows stored after position ``after``, each as
        (its ``seq``, its ``cls`` value), in position order; ``page(after, limit)`` selects
        them. A row that cannot be read back as a ``cls`` value (edited by hand, or written by
        a version whose values this one refuses) is logged once and passed over, and the page
        reads on after it: one such row must neither end every sweep nor make a page come back
        short, which sends a sweep back to its start and would starve the rows after it."""
        found: list[tuple[int, T]] = []
        while len(found) < limit:
            wanted = limit - len(found)
            with self._db.tx() as conn:
                rows = conn.execute(page(after, wanted)).all()
            found += [(r.seq, v) for r in rows if (v := self._readable(r, cls)) is not None]
            if len(rows) < wanted:
                break
            after = rows[-1].seq
        return found

    def _by_keys(
        self, table: Table, key: str, keys: Collection[str], cls: type[T]
    ) -> dict[str, T]:
        """The ``cls`` value of each row of ``table`` whose column ``key`` is one of ``keys``,
        by that key (a key with no row: absent), read :data:`KEYS_AT_ONCE` keys a statement
        instead of one query a key."""
        wanted, found = sorted(set(keys)), {}
        for start in range(0, len(wanted), KEYS_AT_ONCE):
            chunk = wanted[start : start + KEYS_AT_ONCE]
            with self._db.tx() as conn:
                rows = conn.execute(select(table).where(table.c[key].in_(chunk))).all()
            found.update({r._mapping[key]: from_row(r, cls) for r in rows})
        return found

    def _counts(self, column: ColumnElement[str], kind: type[E]) -> dict[E, int]:
        """How many rows hold each value of the enum ``kind`` in ``column`` (one GROUP BY);
        a value this version does not know is left out."""
        with self._db.tx() as conn:
            rows = conn.execute(select(column, func.count()).group_by(column)).all()
        known = {member.value: member for member in kind}
        return {known[value]: int(n) for value, n in rows if value in known}

    def _page_after(
        self, table: Table, cls: type[T], after: int, limit: int, *where: ColumnElement[bool]
    ) -> list[tuple[int, T]]:
        """:meth:`_positioned` over the rows of ``table`` matching ``where``, by ``seq``."""
        seq = table.c.seq

        def page(after: int, limit: int) -> Select[Any]:
            return select(table).where(*where, seq > after).order_by(seq).limit(limit)

        return self._positioned(page, after, limit, cls)

    def _readable(self, row: Row[Any], cls: type[T]) -> T | None:
        """``row``'s ``cls`` value, or None (logged once per row) if it cannot be read. Only
        the kind of failure is logged: a row's values may include what logs must not show."""
        try:
            return from_row(row, cls)
        except Exception as error:  # any refusal by the converter or the value's validators
            seen = (id(self._db), cls.__name__, row.seq)
            if seen not in _UNREADABLE:
                if len(_UNREADABLE) >= _UNREADABLE_KEPT:
                    _UNREADABLE.clear()
                _UNREADABLE.add(seen)
                log.warning(
                    "the %s stored at position %d cannot be read (%s): passed over until it "
                    "is mended or removed", cls.__name__, row.seq, type(error).__name__,
                )  # fmt: skip
            return None


class _ByKeyRepository(MappedRepository, Generic[V]):
    """A store of one kind of value (``_kind``: the subclass's type argument), each in one
    row of ``_table`` under its ``_key`` column (the table's primary key, which is the value's
    attribute of that name)."""

    _table: ClassVar[Table]
    _key: ClassVar[str]
    _kind: ClassVar[type[Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = get_origin(base)
            if isinstance(origin, type) and issubclass(origin, _ByKeyRepository):
                (cls._kind,) = get_args(base)
        if "_table" in cls.__dict__:
            (cls._key,) = cls._table.primary_key.columns.keys()

    def get(self, key: Any) -> V | None:
        """The value stored under ``key``, or None."""
        found: V | None = self._first(select(self._table).where(self._column == key), self._kind)
        return found

    def get_many(self, keys: Collection[str]) -> Mapping[str, V]:
        """The values stored under ``keys``, by key (a key with none: absent)."""
        found: dict[str, V] = self._by_keys(self._table, self._key, keys, self._kind)
        return found

    def _in_key_order(self, limit: int, after: str = "") -> list[V]:
        """Up to ``limit`` stored values whose keys come after ``after``, by key."""
        query = select(self._table).where(self._column > after)
        found: list[V] = self._all(query.order_by(self._column).limit(limit), self._kind)
        return found

    @property
    def _column(self) -> ColumnElement[Any]:
        return self._table.c[self._key]


class KeyedRepository(_ByKeyRepository[V]):
    """A store whose values are added once and saved over: adding, saving and getting one are
    the same for all of them. ``_unknown`` is the Conflict message of a save of an unknown key
    (``{}``: the key)."""

    _unknown: ClassVar[str]

    def add(self, value: V) -> None:
        """Store a new value; Conflict if its key (or another unique column) is taken."""
        self._insert(self._table, value)

    def save(self, value: V) -> None:
        """Replace the stored value with the same key; Conflict if there is none."""
        key = getattr(value, self._key)
        self._overwrite(self._table, value, self._unknown.format(key), self._column == key)


class PutRepository(_ByKeyRepository[V]):
    """A store that keeps the latest value per key: putting one stores or replaces it in one
    statement (concurrent writers never clash), getting one reads it back."""

    def put(self, value: V) -> None:
        """Store ``value`` under its key, replacing the value stored there."""
        with self._db.tx(write=True) as conn:
            upsert(conn, self._table, to_row(value), self._key)
