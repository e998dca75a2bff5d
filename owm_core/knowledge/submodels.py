"""The sub-model registry's value: one member of the conglomerate model (SRS 2.1).

OWM answers queries with many small models working as one. A :class:`SubModel` is one of them:
a slug name (``owm-geo``), the domain it knows about in plain words (the router compares queries
with this description), its kind (how it answers), its current version id (anchored with
OpenTimestamps through :mod:`owm_core.provenance.versions`), the contributed datasets it draws on
and the
nodes that host it. The registry itself is a repository (``SubModelRepository``).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Sequence

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.provenance.versions import VERSION_PATTERN

#: Dataset ids are ``ds-`` + the first 24 hex digits of the dataset's content digest.
DATASET_ID_PATTERN = r"ds-[0-9a-f]{24}"
#: Node ids as the registry spells them (see ``owm_core.nodes.registry``): at most 64 safe
#: characters.
NODE_ID_PATTERN = r"[A-Za-z0-9_.:-]{1,64}"


class SubModelKind(enum.StrEnum):
    """How a sub-model produces an answer."""

    #: Retrieves passages from its datasets and reads an answer out of them (extractive).
    RETRIEVAL_READER = "retrieval-reader"
    #: A trained network (FL rounds) generating or classifying from the query itself.
    TRAINED = "trained"


def _kind(value: object) -> object:
    return fields.to_enum(SubModelKind, "kind", value)


def _tuple_of(pattern: str, what: str, max_items: int) -> fields.Validator:
    """A tuple of distinct strings, each fully matching ``pattern``."""
    compiled = re.compile(pattern)

    def check(_instance: object, attribute: attrs.Attribute[object], value: object) -> None:
        if not isinstance(value, tuple):
            raise InvalidValue(attribute.name, f"must be a tuple, got {type(value).__name__}")
        if len(value) > max_items:
            raise InvalidValue(attribute.name, f"at most {max_items} items, got {len(value)}")
        if len(set(value)) != len(value):
            raise InvalidValue(attribute.name, "items must be distinct")
        for item in value:
            if not isinstance(item, str) or not compiled.fullmatch(item):
                raise InvalidValue(attribute.name, f"{item!r} is not {what}")

    return check


def _sorted_tuple(value: object) -> object:
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(sorted(value)) if all(isinstance(v, str) for v in value) else tuple(value)
    return value


@attrs.frozen
class SubModel:
    """One registered sub-model of the conglomerate (SRS 2.1).

    ``dataset_ids`` and ``host_node_ids`` are kept sorted so equal registries compare equal.
    ``version_digest`` is the hex SHA-256 of the version's canonical serialisation
    (:func:`owm_core.provenance.versions.model_digest`) once the version has been built and stamped;
    ``None`` before that.
    """

    name: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    description: str = attrs.field(validator=fields.text(min_len=8, max_len=2_000))
    kind: SubModelKind = attrs.field(
        converter=_kind, validator=fields.instance_of(SubModelKind)
    )
    version: str = attrs.field(validator=fields.text(max_len=64, pattern=VERSION_PATTERN))
    created_at: int = attrs.field(validator=fields.timestamp())
    dataset_ids: tuple[str, ...] = attrs.field(
        default=(),
        converter=_sorted_tuple,
        validator=_tuple_of(DATASET_ID_PATTERN, "a dataset id (ds-<24 hex>)", 10_000),
    )
    host_node_ids: tuple[str, ...] = attrs.field(
        default=(),
        converter=_sorted_tuple,
        validator=_tuple_of(NODE_ID_PATTERN, "a node id", 10_000),
    )
    version_digest: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(fields.hex_digest(32)),
    )

    def with_dataset(self, dataset_id: str) -> SubModel:
        """This sub-model drawing also on ``dataset_id`` (idempotent)."""
        if dataset_id in self.dataset_ids:
            return self
        return attrs.evolve(self, dataset_ids=(*self.dataset_ids, dataset_id))

    def with_hosts(self, node_ids: Sequence[str]) -> SubModel:
        """This sub-model hosted by exactly ``node_ids``."""
        return attrs.evolve(self, host_node_ids=tuple(node_ids))

    def version_metadata(self, dataset_digests: Sequence[str]) -> dict[str, object]:
        """Metadata hashed into the sub-model's version (its definition and its data's digests).

        A retrieval-reader's "weights" are its data, so the version's digest covers the
        description, the kind and the sorted digests of every dataset it draws on: changing any
        of them makes a new version (SRS-NODE-10).
        """
        return {
            "description": self.description,
            "kind": self.kind.value,
            "datasets": sorted(dataset_digests),
        }


def registry_digest(sub_models: Sequence[SubModel]) -> str:
    """Hex SHA-256 over the registry's canonical JSON (names, kinds, versions, datasets)."""
    rows = [
        {
            "name": m.name,
            "kind": m.kind.value,
            "version": m.version,
            "datasets": list(m.dataset_ids),
        }
        for m in sorted(sub_models, key=lambda m: m.name)
    ]
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
