"""Contributed datasets: their wire format, validation, content hash and passage chunking.

Data contributors (SRS 2.2) submit a dataset as one UTF-8 JSON document,
format ``owm-dataset/1``::

    {
      "format": "owm-dataset/1",            optional; the only format so far
      "name": "world-capitals",             required; 1-64 of [a-z0-9._-], starts alphanumeric
      "sub_models": ["owm-geo"],            required; 1-8 sub-model names it is indexed for
      "source": "OWM demo authors",         required unless every document names its own
      "licence": "CC0-1.0",                 required unless every document names its own
      "description": "...",                 optional, at most 2,000 characters
      "documents": [                        required; 1-2,000 documents
        {"title": "France",                 required; 1-300 characters
         "text": "Paris is the capital…",   required; 1-50,000 characters
         "source": "…", "licence": "…",     optional; override the dataset's
         "url": "https://…"}                optional; at most 2,000 characters
      ]
    }

The whole document is at most :data:`MAX_DATASET_BYTES` bytes; unknown keys are refused (so a
typo such as ``"licens"`` is an error, not silently dropped). Every document ends up with a
source and a licence: a licence is an SPDX identifier (``CC0-1.0``, ``CC-BY-4.0``) or a short
licence text, at most 200 characters. Errors are :class:`~owm_core.errors.InvalidValue` whose
``field`` is a path into the document (``documents[3].licence``).

**Content hash.** :func:`dataset_digest` is SHA-256 over the dataset's canonical JSON: the keys
above with every document's source and licence resolved, object keys sorted, separators
``,``/``:``, UTF-8 without ASCII escaping, document order kept, ``format`` always present. The
contributor is *not* hashed: the same content is the same dataset whoever sends it (the first
contributor keeps the attribution). The dataset id is ``ds-`` + the digest's first 24 hex
digits.

**Passages.** :func:`chunk_text` splits a document's text, whitespace-normalised (runs of
whitespace become one space, ends stripped), into passages of at most
:data:`PASSAGE_MAX_CHARS` characters: whole sentences (ending in ``.``, ``!`` or ``?`` followed
by a space) are packed greedily; a sentence longer than the limit is packed word by word; a word
longer than the limit is cut. Deterministic, no overlap, nothing lost: joining the passages'
non-space characters gives the document's non-space characters in order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.knowledge.submodels import DATASET_ID_PATTERN

FORMAT = "owm-dataset/1"
MAX_DATASET_BYTES = 1 << 20  # 1 MiB: also the HTTP API's body limit
MAX_DOCUMENTS = 2_000
MAX_DOCUMENT_CHARS = 50_000
MAX_TITLE_CHARS = 300
MAX_SOURCE_CHARS = 300
MAX_LICENCE_CHARS = 200
MAX_URL_CHARS = 2_000
MAX_SUB_MODELS = 8
PASSAGE_MAX_CHARS = 600
#: Who contributed: the API key's owner (e-mail, GitHub login, node id, …).
CONTRIBUTOR_MAX_CHARS = 256

_DATASET_KEYS = frozenset(
    {"format", "name", "sub_models", "source", "licence", "description", "documents"}
)
_DOCUMENT_KEYS = frozenset({"title", "text", "source", "licence", "url"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WHITESPACE = re.compile(r"\s+")


def _str_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _document_tuple(value: Iterable[Document]) -> tuple[Document, ...]:
    return tuple(value)


def _sub_models(value: object) -> object:
    if isinstance(value, list | tuple):
        return tuple(value)
    return value


def _check_sub_models(_instance: object, attribute: attrs.Attribute[object], value: object) -> None:
    if not isinstance(value, tuple) or not 1 <= len(value) <= MAX_SUB_MODELS:
        raise InvalidValue(attribute.name, f"must list 1 to {MAX_SUB_MODELS} sub-model names")
    if len(set(value)) != len(value):
        raise InvalidValue(attribute.name, "sub-model names must be distinct")
    pattern = re.compile(fields.SLUG)
    for item in value:
        if not isinstance(item, str) or not pattern.fullmatch(item):
            raise InvalidValue(attribute.name, f"{item!r} is not a sub-model name (e.g. owm-geo)")


@attrs.frozen
class Document:
    """One document of a dataset, with its own (resolved) source and licence."""

    title: str = attrs.field(validator=fields.text(max_len=MAX_TITLE_CHARS))
    text: str = attrs.field(validator=fields.text(max_len=MAX_DOCUMENT_CHARS))
    source: str = attrs.field(validator=fields.text(max_len=MAX_SOURCE_CHARS))
    licence: str = attrs.field(validator=fields.text(max_len=MAX_LICENCE_CHARS))
    url: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.text(max_len=MAX_URL_CHARS))
    )

    def canonical(self) -> dict[str, Any]:
        """The JSON object hashed for this document."""
        row: dict[str, Any] = {
            "title": self.title,
            "text": self.text,
            "source": self.source,
            "licence": self.licence,
        }
        if self.url is not None:
            row["url"] = self.url
        return row


@attrs.frozen
class Dataset:
    """A contributed dataset's content (what is hashed), before attribution and storage."""

    name: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    sub_models: tuple[str, ...] = attrs.field(converter=_sub_models, validator=_check_sub_models)
    documents: tuple[Document, ...] = attrs.field(converter=_document_tuple)
    description: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=2_000))

    @documents.validator
    def _check_documents(self, attribute: attrs.Attribute[object], value: object) -> None:
        if not isinstance(value, tuple) or not 1 <= len(value) <= MAX_DOCUMENTS:
            raise InvalidValue("documents", f"must hold 1 to {MAX_DOCUMENTS} documents")
        for i, doc in enumerate(value):
            if not isinstance(doc, Document):
                raise InvalidValue(f"documents[{i}]", "must be a Document")

    def canonical_json(self) -> bytes:
        """The canonical UTF-8 JSON this dataset's digest is taken over (module docstring)."""
        body = {
            "format": FORMAT,
            "name": self.name,
            "sub_models": list(self.sub_models),
            "description": self.description,
            "documents": [d.canonical() for d in self.documents],
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")

    @property
    def digest(self) -> str:
        """Hex SHA-256 of :meth:`canonical_json`: the content hash that is OTS-stamped."""
        return hashlib.sha256(self.canonical_json()).hexdigest()

    @property
    def dataset_id(self) -> str:
        """``ds-`` + the digest's first 24 hex digits: equal content, equal id."""
        return dataset_id_of(self.digest)

    @property
    def licences(self) -> tuple[str, ...]:
        """The distinct licences of its documents, sorted."""
        return tuple(sorted({d.licence for d in self.documents}))

    @property
    def sources(self) -> tuple[str, ...]:
        """The distinct sources of its documents, sorted."""
        return tuple(sorted({d.source for d in self.documents}))


def dataset_id_of(digest_hex: str) -> str:
    """The dataset id for a content digest (hex SHA-256)."""
    return "ds-" + digest_hex[:24]


def dataset_digest(dataset: Dataset) -> str:
    """Hex SHA-256 over ``dataset``'s canonical JSON (see the module docstring)."""
    return dataset.digest


@attrs.frozen
class DatasetRecord:
    """A stored contribution: which dataset, who sent it, when, and its timestamp proof.

    ``proof`` holds the OpenTimestamps ``.ots`` bytes of the stamp over ``digest`` (pending
    until the calendars anchor it), or ``None`` where no timestamping is configured.
    """

    dataset_id: str = attrs.field(validator=fields.text(max_len=27, pattern=DATASET_ID_PATTERN))
    digest: str = attrs.field(validator=fields.hex_digest(32))
    name: str = attrs.field(validator=fields.text(max_len=64, pattern=fields.SLUG))
    sub_models: tuple[str, ...] = attrs.field(converter=_sub_models, validator=_check_sub_models)
    contributor: str = attrs.field(validator=fields.text(max_len=CONTRIBUTOR_MAX_CHARS))
    submitted_at: int = attrs.field(validator=fields.timestamp())
    n_documents: int = attrs.field(validator=fields.integer(minimum=1))
    n_passages: int = attrs.field(validator=fields.integer(minimum=0))
    size_bytes: int = attrs.field(validator=fields.integer(minimum=1))
    licences: tuple[str, ...] = attrs.field(converter=_str_tuple)
    sources: tuple[str, ...] = attrs.field(converter=_str_tuple)
    description: str = attrs.field(default="", validator=fields.text(min_len=0, max_len=2_000))
    proof: bytes | None = attrs.field(
        default=None, validator=attrs.validators.optional(fields.raw_bytes())
    )

    @dataset_id.validator
    def _id_matches_digest(self, attribute: attrs.Attribute[object], value: str) -> None:
        if value != dataset_id_of(self.digest):
            raise InvalidValue("dataset_id", "must be ds- + the digest's first 24 hex digits")


def record_for(
    dataset: Dataset, contributor: str, submitted_at: int, n_passages: int, proof: bytes | None
) -> DatasetRecord:
    """The record attributing ``dataset`` to ``contributor`` at ``submitted_at``: the dataset's
    own values of the fields both have (id, digest, name, sub-models, licences, sources,
    description), and the rest."""
    return fields.copied(
        DatasetRecord,
        dataset,
        contributor=contributor,
        submitted_at=submitted_at,
        n_documents=len(dataset.documents),
        n_passages=n_passages,
        size_bytes=len(dataset.canonical_json()),
        proof=proof,
    )


# --- parsing the wire format -------------------------------------------------------------------


def parse_dataset(raw: bytes) -> Dataset:
    """Validate and decode one ``owm-dataset/1`` document (size, encoding, schema).

    Raises :class:`InvalidValue` whose ``field`` names the offending place: ``dataset`` for the
    whole (too big, not UTF-8, not JSON), ``documents[3].title`` for a document's field.
    """
    if not isinstance(raw, bytes | bytearray):
        raise InvalidValue("dataset", "must be bytes")
    if len(raw) > MAX_DATASET_BYTES:
        raise InvalidValue(
            "dataset", f"is {len(raw)} bytes; at most {MAX_DATASET_BYTES} are accepted"
        )
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidValue("dataset", f"is not UTF-8 (byte {e.start})") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidValue(
            "dataset", f"is not JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except RecursionError:
        raise InvalidValue("dataset", "is nested too deeply") from None
    return dataset_from_object(body)


def _string(obj: Mapping[str, Any], key: str, path: str, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidValue(path, "is required")
        return None
    if not isinstance(value, str):
        raise InvalidValue(path, f"must be text, got {type(value).__name__}")
    return value


def _required(obj: Mapping[str, Any], key: str, path: str) -> str:
    value = _string(obj, key, path, required=True)
    if value is None:  # pragma: no cover - _string raised already
        raise InvalidValue(path, "is required")
    return value


def _unknown_keys(obj: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise InvalidValue(path, f"unknown key(s) {extra}; allowed: {sorted(allowed)}")


def dataset_from_object(body: object) -> Dataset:
    """A :class:`Dataset` from already-decoded JSON (the schema checks of :func:`parse_dataset`)."""
    if not isinstance(body, dict):
        raise InvalidValue("dataset", "must be a JSON object")
    _unknown_keys(body, _DATASET_KEYS, "dataset")
    fmt = _string(body, "format", "format", required=False)
    if fmt is not None and fmt != FORMAT:
        raise InvalidValue("format", f"must be {FORMAT!r}, got {fmt!r}")
    name = _required(body, "name", "name")
    sub_models = body.get("sub_models")
    if not isinstance(sub_models, list):
        raise InvalidValue("sub_models", "must be a list of sub-model names, e.g. [\"owm-geo\"]")
    source = _string(body, "source", "source", required=False)
    licence = _string(body, "licence", "licence", required=False)
    description = _string(body, "description", "description", required=False) or ""
    for key, value, limit in (
        ("source", source, MAX_SOURCE_CHARS),
        ("licence", licence, MAX_LICENCE_CHARS),
    ):
        if value is not None and not 1 <= len(value.strip()) <= limit:
            raise InvalidValue(key, f"must be 1 to {limit} characters")
    raw_docs = body.get("documents")
    if not isinstance(raw_docs, list) or not raw_docs:
        raise InvalidValue("documents", "must be a non-empty list of {title, text} objects")
    if len(raw_docs) > MAX_DOCUMENTS:
        raise InvalidValue("documents", f"at most {MAX_DOCUMENTS} documents, got {len(raw_docs)}")
    documents = [
        _document(doc, f"documents[{i}]", source, licence) for i, doc in enumerate(raw_docs)
    ]
    return Dataset(
        name=name, sub_models=tuple(sub_models), documents=documents, description=description
    )


def _document(obj: object, path: str, source: str | None, licence: str | None) -> Document:
    if not isinstance(obj, dict):
        raise InvalidValue(path, "must be an object with title and text")
    _unknown_keys(obj, _DOCUMENT_KEYS, path)
    title = _required(obj, "title", f"{path}.title")
    body = _required(obj, "text", f"{path}.text")
    own_source = _string(obj, "source", f"{path}.source", required=False) or source
    own_licence = _string(obj, "licence", f"{path}.licence", required=False) or licence
    if own_source is None:
        raise InvalidValue(f"{path}.source", "is required (here or as the dataset's source)")
    if own_licence is None:
        raise InvalidValue(f"{path}.licence", "is required (here or as the dataset's licence)")
    url = _string(obj, "url", f"{path}.url", required=False)
    if not body.strip():
        raise InvalidValue(f"{path}.text", "must not be blank")
    try:
        return Document(title=title, text=body, source=own_source, licence=own_licence, url=url)
    except InvalidValue as e:
        raise InvalidValue(f"{path}.{e.field}", e.reason) from None


# --- passages ----------------------------------------------------------------------------------


@attrs.frozen
class Passage:
    """One retrievable chunk of a document, with everything an answer must cite."""

    passage_id: str = attrs.field(validator=fields.text(max_len=80))
    dataset_id: str = attrs.field(validator=fields.text(max_len=27, pattern=DATASET_ID_PATTERN))
    document_index: int = attrs.field(validator=fields.integer(minimum=0))
    chunk_index: int = attrs.field(validator=fields.integer(minimum=0))
    sub_models: tuple[str, ...] = attrs.field(converter=_sub_models, validator=_check_sub_models)
    title: str = attrs.field(validator=fields.text(max_len=MAX_TITLE_CHARS))
    text: str = attrs.field(validator=fields.text(max_len=PASSAGE_MAX_CHARS))
    source: str = attrs.field(validator=fields.text(max_len=MAX_SOURCE_CHARS))
    licence: str = attrs.field(validator=fields.text(max_len=MAX_LICENCE_CHARS))
    contributor: str = attrs.field(validator=fields.text(max_len=CONTRIBUTOR_MAX_CHARS))


def passage_id_of(dataset_id: str, document_index: int, chunk_index: int) -> str:
    """The stable id of passage ``chunk_index`` of document ``document_index``."""
    return f"{dataset_id}:{document_index}:{chunk_index}"


def normalise_whitespace(text: str) -> str:
    """``text`` with every run of whitespace made one space, and its ends stripped."""
    return _WHITESPACE.sub(" ", text).strip()


def chunk_text(text: str, max_chars: int = PASSAGE_MAX_CHARS) -> tuple[str, ...]:
    """Split ``text`` into passages of at most ``max_chars`` characters (module docstring)."""
    if max_chars < 1:
        raise InvalidValue("max_chars", "must be ≥ 1")
    flat = normalise_whitespace(text)
    if not flat:
        return ()
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(flat):
        if len(sentence) <= max_chars:
            pieces.append(sentence)
            continue
        for word in sentence.split(" "):
            pieces.extend(word[i : i + max_chars] for i in range(0, len(word), max_chars))
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    chunks.append(current)
    return tuple(chunks)


def passages_of(
    dataset: Dataset, contributor: str, max_chars: int = PASSAGE_MAX_CHARS
) -> tuple[Passage, ...]:
    """Every passage of ``dataset``, in document then chunk order, attributed to ``contributor``.

    The document's title is not repeated in the passage text; embedders see
    :func:`passage_embedding_text` (title + text) so a passage about "France" is found by a
    question naming France even where the paragraph says "the country".
    """
    dataset_id = dataset.dataset_id
    out: list[Passage] = []
    for d, doc in enumerate(dataset.documents):
        for c, chunk in enumerate(chunk_text(doc.text, max_chars)):
            out.append(
                Passage(
                    passage_id=passage_id_of(dataset_id, d, c),
                    dataset_id=dataset_id,
                    document_index=d,
                    chunk_index=c,
                    sub_models=dataset.sub_models,
                    title=doc.title,
                    text=chunk,
                    source=doc.source,
                    licence=doc.licence,
                    contributor=contributor,
                )
            )
    return tuple(out)


def passage_embedding_text(passage: Passage) -> str:
    """What is embedded for ``passage``: its document title, a full stop, and its text."""
    return f"{passage.title}. {passage.text}"
