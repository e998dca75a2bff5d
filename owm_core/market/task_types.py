"""The node's built-in task types: their input schemas, validation and output hashing.

A node validates every assignment against its task type's schema before anything runs
(SRS-NODE-07); an invalid input is refused with a reason that names the offending field
(``input.features[2][5]: must be a finite number``). Three task types are built in:

* ``inference`` — run a sub-model on inputs (schemas ``owm.inference.features`` v1: rows of
  ``FEATURES`` numbers; ``owm.inference.text`` v1: a prompt, embedded deterministically;
  ``owm.inference.passages`` v1: a query and retrieved passages, read extractively — the
  conglomerate's query path, SRS 2.1);
* ``fl_training`` — one federated round of local training of the architecture ``model``
  names (default ``tinynet``) on the data the input names (``owm.fl.train`` v1; with
  ``upload_url`` the node signs its update and POSTs it there over clearnet, and the task's
  output carries only a digest of it, SRS-NET-04);
* ``gradient_aggregation`` — robust aggregation of client updates with
  :mod:`owm_core.fl.aggregation` (``owm.fl.aggregate`` v1).

Outputs are hashed with :func:`output_hash`: canonical JSON (sorted keys, no spaces) with every
float rounded to ``FLOAT_DIGITS`` significant digits, so that honest nodes on different CPUs
and GPUs agree on the hash the coordinator compares (redundant verification, seed 003).
Pure: inputs arrive as bytes, nothing here touches the outside world.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from owm_core import patterns
from owm_core.errors import InvalidValue
from owm_core.json_objects import unique_keys

FEATURES = 32
"""Input width of the built-in sub-model architecture (``owm_adapters.flower.model.TinyNet``)."""
CLASSES = 10
HIDDEN = 64
FLOAT_DIGITS = 6
"""Significant digits kept when hashing floats (see module docstring)."""
MAX_INPUT_BYTES = 8 * 1024 * 1024

_SLUG = re.compile(patterns.SLUG)
_UPLOAD_URL = re.compile(r"https?://[^\s/?#@]+(?:[/?][^\s#]*)?")
"""Where a node POSTs its signed FL update (http/https, over clearnet only: SRS-NET-04)."""


class TaskType(enum.Enum):
    """The task types a node can serve; the value is the capability name on the wire."""

    INFERENCE = "inference"
    FL_TRAINING = "fl_training"
    GRADIENT_AGGREGATION = "gradient_aggregation"


class Kind(enum.Enum):
    """The JSON shape of one input field."""

    TEXT = "text"
    INTEGER = "integer"
    NUMBER = "number"
    VECTOR = "vector"  # list of finite numbers
    MATRIX = "matrix"  # non-empty list of equally long vectors
    CHOICE = "choice"
    RECORDS = "records"  # list of JSON objects, each checked against ``FieldSpec.items``


# Frozen dataclasses, not attrs: this module is imported by every task worker process, and
# attrs alone would add ~35 ms to each task's start-up (the query path runs many small tasks).
@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One input field: its kind, whether it is required, and its bounds.

    For TEXT ``minimum``/``maximum`` bound the length; for numbers the value; for VECTOR the
    length; for MATRIX the number of rows (``width`` fixes the row length when set); for
    RECORDS the number of objects, each of which must have exactly the fields ``items``.
    """

    name: str
    kind: Kind
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    width: int | None = None
    max_rows: int | None = None
    pattern: re.Pattern[str] | None = None
    choices: tuple[str, ...] = ()
    items: tuple[FieldSpec, ...] = ()


@dataclasses.dataclass(frozen=True)
class TaskSchema:
    """The schema one task type's input must satisfy (id + version travel with the task)."""

    task_type: TaskType
    schema_id: str
    version: int
    fields: tuple[FieldSpec, ...]

    @property
    def key(self) -> tuple[str, int]:
        """How an assignment names this schema: ``(input_schema_id, input_schema_version)``."""
        return (self.schema_id, self.version)


MAX_PASSAGES = 32
"""Passages one ``owm.inference.passages`` task may carry (the router sends its top hits)."""
MAX_PASSAGE_CHARS = 4_000
MAX_QUERY_CHARS = 2_000
MAX_READER_TOP_K = 10
MAX_TRAINING_PAIRS = 256
"""Training pairs one ``owm.fl.train`` task may carry (``minilm-lora``: question, passage and
answer span, ``owm_core.knowledge.training_pairs``)."""

FL_MODELS = ("minilm-lora", "tinynet")
"""The architectures an ``fl_training`` task may name (``owm_adapters.models.architectures``;
kept literal: validation imports no model code)."""

AGGREGATION_RULES = ("fedavg", "krum", "multikrum", "trimmed", "median", "bulyan")
"""The values of :class:`owm_core.fl.aggregation.Rule` (kept literal: validation needs no torch)."""

BUILTIN_SCHEMAS: tuple[TaskSchema, ...] = (
    TaskSchema(
        TaskType.INFERENCE,
        "owm.inference.features",
        1,
        (
            FieldSpec("sub_model", Kind.TEXT, pattern=_SLUG),
            FieldSpec("features", Kind.MATRIX, minimum=1, maximum=1024, width=FEATURES),
        ),
    ),
    TaskSchema(
        TaskType.INFERENCE,
        "owm.inference.text",
        1,
        (
            FieldSpec("prompt", Kind.TEXT, minimum=1, maximum=65_536),
            FieldSpec("sub_model", Kind.TEXT, required=False, pattern=_SLUG),
        ),
    ),
    TaskSchema(
        TaskType.INFERENCE,
        "owm.inference.passages",
        1,
        (
            FieldSpec("sub_model", Kind.TEXT, pattern=_SLUG),
            FieldSpec("query", Kind.TEXT, minimum=1, maximum=MAX_QUERY_CHARS),
            FieldSpec(
                "passages",
                Kind.RECORDS,
                minimum=1,
                maximum=MAX_PASSAGES,
                items=(
                    FieldSpec("id", Kind.TEXT, minimum=1, maximum=128),
                    FieldSpec("text", Kind.TEXT, minimum=1, maximum=MAX_PASSAGE_CHARS),
                ),
            ),
            FieldSpec("top_k", Kind.INTEGER, required=False, minimum=1, maximum=MAX_READER_TOP_K),
        ),
    ),
    TaskSchema(
        TaskType.FL_TRAINING,
        "owm.fl.train",
        1,
        (
            FieldSpec("sub_model", Kind.TEXT, pattern=_SLUG),
            FieldSpec("model", Kind.CHOICE, required=False, choices=FL_MODELS),
            FieldSpec("round", Kind.INTEGER, minimum=0, maximum=10**9),
            FieldSpec("partition_id", Kind.INTEGER, minimum=0, maximum=10**6),
            FieldSpec("epochs", Kind.INTEGER, minimum=1, maximum=20),
            FieldSpec("lr", Kind.NUMBER, minimum=1e-6, maximum=10.0),
            FieldSpec("batch_size", Kind.INTEGER, minimum=1, maximum=4096),
            FieldSpec("seed", Kind.INTEGER, minimum=0, maximum=2**31 - 1),
            FieldSpec("global_weights", Kind.VECTOR, required=False, minimum=1, maximum=10**7),
            FieldSpec(
                "pairs",
                Kind.RECORDS,
                required=False,
                minimum=1,
                maximum=MAX_TRAINING_PAIRS,
                items=(
                    FieldSpec("question", Kind.TEXT, minimum=1, maximum=1_000),
                    FieldSpec("passage", Kind.TEXT, minimum=1, maximum=MAX_PASSAGE_CHARS),
                    FieldSpec("answer", Kind.TEXT, required=False, maximum=200),
                    FieldSpec("answer_start", Kind.INTEGER, required=False, minimum=-1,
                              maximum=MAX_PASSAGE_CHARS),
                ),
            ),
            FieldSpec("upload_url", Kind.TEXT, required=False, minimum=1, maximum=2_048,
                      pattern=_UPLOAD_URL),
        ),
    ),
    TaskSchema(
        TaskType.GRADIENT_AGGREGATION,
        "owm.fl.aggregate",
        1,
        (
            FieldSpec("rule", Kind.CHOICE, choices=AGGREGATION_RULES),
            FieldSpec("f", Kind.INTEGER, minimum=0, maximum=10_000),
            FieldSpec("updates", Kind.MATRIX, minimum=1, maximum=10_000),
            FieldSpec("weights", Kind.VECTOR, required=False, minimum=1, maximum=10_000),
        ),
    ),
)


def capabilities() -> tuple[str, ...]:
    """Every built-in task type, as advertised on the task stream (sorted)."""
    return tuple(sorted(t.value for t in TaskType))


def schema_for(task_type: str, schema_id: str, version: int) -> TaskSchema:
    """The built-in schema an assignment names; InvalidValue naming the field if none fits."""
    try:
        kind = TaskType(task_type)
    except ValueError:
        raise InvalidValue(
            "task_type", f"{task_type!r} is not served here (serves {', '.join(capabilities())})"
        ) from None
    known = [s for s in BUILTIN_SCHEMAS if s.task_type is kind]
    for schema in known:
        if schema.schema_id == schema_id:
            if schema.version == version:
                return schema
            raise InvalidValue(
                "input_schema_version", f"{schema_id} has version {schema.version}, not {version}"
            )
    names = ", ".join(s.schema_id for s in known)
    raise InvalidValue("input_schema_id", f"{schema_id!r} is not a {task_type} schema ({names})")


def _reject_constant(name: str) -> Any:
    raise InvalidValue("input", f"{name} is not a number")


def parse_input(raw: bytes) -> dict[str, Any]:
    """Decode an assignment's input bytes: one UTF-8 JSON object, no NaN/Infinity, no dup keys."""
    if not isinstance(raw, bytes):
        raise InvalidValue("input", "must be bytes")
    if len(raw) > MAX_INPUT_BYTES:
        raise InvalidValue("input", f"is {len(raw)} bytes; at most {MAX_INPUT_BYTES}")
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=unique_keys("input"),
            parse_constant=_reject_constant,
        )
    except UnicodeDecodeError:
        raise InvalidValue("input", "is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidValue("input", f"is not JSON: {exc.msg} at offset {exc.pos}") from None
    if not isinstance(value, dict):
        raise InvalidValue("input", "must be a JSON object")
    return value


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _check_bounds(path: str, value: float, spec: FieldSpec, what: str = "") -> None:
    if spec.minimum is not None and value < spec.minimum:
        raise InvalidValue(path, f"{what}must be at least {spec.minimum:g}")
    if spec.maximum is not None and value > spec.maximum:
        raise InvalidValue(path, f"{what}must be at most {spec.maximum:g}")


def _check_vector(path: str, value: object, length: int | None = None) -> list[float]:
    if not isinstance(value, list):
        raise InvalidValue(path, "must be a list of numbers")
    if length is not None and len(value) != length:
        raise InvalidValue(path, f"must have {length} numbers, has {len(value)}")
    for i, item in enumerate(value):
        if not _is_number(item):
            raise InvalidValue(f"{path}[{i}]", "must be a finite number")
    return value


def _check_records(path: str, spec: FieldSpec, value: object) -> None:
    if not isinstance(value, list):
        raise InvalidValue(path, "must be a list of objects")
    _check_bounds(path, len(value), spec, "item count ")
    allowed = {item.name for item in spec.items}
    for i, record in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(record, dict):
            raise InvalidValue(where, "must be an object")
        extra = sorted(set(record) - allowed)
        if extra:
            raise InvalidValue(f"{where}.{extra[0]}", "is not an allowed field")
        for item in spec.items:
            if item.name not in record:
                if item.required:
                    raise InvalidValue(f"{where}.{item.name}", "is required")
                continue
            _check_field(item, record[item.name], f"{where}.{item.name}")


def _check_field(spec: FieldSpec, value: object, path: str | None = None) -> None:
    path = path if path is not None else f"input.{spec.name}"
    if spec.kind is Kind.TEXT:
        if not isinstance(value, str):
            raise InvalidValue(path, "must be a string")
        _check_bounds(path, len(value), spec, "length ")
        if spec.pattern is not None and not spec.pattern.fullmatch(value):
            raise InvalidValue(path, f"must match {spec.pattern.pattern}")
    elif spec.kind is Kind.INTEGER:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidValue(path, "must be an integer")
        _check_bounds(path, value, spec)
    elif spec.kind is Kind.NUMBER:
        if not _is_number(value):
            raise InvalidValue(path, "must be a finite number")
        assert isinstance(value, int | float)
        _check_bounds(path, float(value), spec)
    elif spec.kind is Kind.CHOICE:
        if value not in spec.choices:
            raise InvalidValue(path, f"must be one of {', '.join(spec.choices)}")
    elif spec.kind is Kind.VECTOR:
        vector = _check_vector(path, value)
        _check_bounds(path, len(vector), spec, "length ")
    elif spec.kind is Kind.RECORDS:
        _check_records(path, spec, value)
    else:
        if not isinstance(value, list) or not value:
            raise InvalidValue(path, "must be a non-empty list of lists of numbers")
        _check_bounds(path, len(value), spec, "row count ")
        first = value[0]
        width = spec.width if spec.width is not None else (
            len(first) if isinstance(first, list) else None
        )
        if width == 0:
            raise InvalidValue(f"{path}[0]", "must not be empty")
        for i, row in enumerate(value):
            _check_vector(f"{path}[{i}]", row, width)


def _cross_checks(schema: TaskSchema, data: Mapping[str, Any]) -> None:
    if schema.task_type is TaskType.GRADIENT_AGGREGATION:
        weights = data.get("weights")
        if weights is not None and len(weights) != len(data["updates"]):
            raise InvalidValue("input.weights", "must have one weight per update")
    if schema.schema_id == "owm.inference.passages":
        seen: dict[str, int] = {}
        for i, passage in enumerate(data["passages"]):
            first = seen.setdefault(passage["id"], i)
            if first != i:
                raise InvalidValue(f"input.passages[{i}].id", f"repeats passages[{first}].id")


def validate_input(
    task_type: str, schema_id: str, version: int, raw: bytes
) -> tuple[TaskSchema, dict[str, Any]]:
    """Check an assignment's input against its schema before execution (SRS-NODE-07).

    Returns the schema and the decoded input; raises InvalidValue whose ``field`` names the
    offending part (``task_type``, ``input_schema_id``, ``input``, ``input.<field>[i]``).
    Unknown keys are refused so that a typo cannot silently change what runs.
    """
    schema = schema_for(task_type, schema_id, version)
    data = parse_input(raw)
    allowed = {f.name for f in schema.fields}
    extra = sorted(set(data) - allowed)
    if extra:
        raise InvalidValue(f"input.{extra[0]}", f"is not a field of {schema.schema_id}")
    for spec in schema.fields:
        if spec.name not in data:
            if spec.required:
                raise InvalidValue(f"input.{spec.name}", "is required")
            continue
        _check_field(spec, data[spec.name])
    _cross_checks(schema, data)
    return schema, data


def input_hash(raw: bytes) -> str:
    """SHA-256 hex of the input bytes as received (task log, SRS-NODE-06)."""
    return hashlib.sha256(raw).hexdigest()


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValue("output", "contains a non-finite number")
        if value == 0.0:
            return 0.0
        return float(f"{value:.{FLOAT_DIGITS}g}")
    if isinstance(value, dict):
        return {str(k): _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def canonical_output(output: Mapping[str, Any]) -> bytes:
    """The bytes an output is hashed as: floats rounded, sorted keys, compact separators."""
    return json.dumps(
        _rounded(dict(output)), sort_keys=True, separators=(",", ":"), allow_nan=False
    ).encode("utf-8")


def output_hash(output: Mapping[str, Any]) -> str:
    """SHA-256 hex of :func:`canonical_output`: what the task proof commits to."""
    return hashlib.sha256(canonical_output(output)).hexdigest()


def text_features(prompt: str) -> list[float]:
    """A prompt's deterministic ``FEATURES``-wide embedding (hash-based; values in [-1, 1))."""
    digest = b""
    counter = 0
    while len(digest) < 2 * FEATURES:
        digest += hashlib.sha256(counter.to_bytes(4, "big") + prompt.encode("utf-8")).digest()
        counter += 1
    return [
        int.from_bytes(digest[2 * i : 2 * i + 2], "big") / 32768.0 - 1.0 for i in range(FEATURES)
    ]


__all__ = [
    "AGGREGATION_RULES",
    "BUILTIN_SCHEMAS",
    "CLASSES",
    "FEATURES",
    "FL_MODELS",
    "HIDDEN",
    "MAX_PASSAGES",
    "MAX_PASSAGE_CHARS",
    "MAX_QUERY_CHARS",
    "MAX_READER_TOP_K",
    "FieldSpec",
    "Kind",
    "TaskSchema",
    "TaskType",
    "canonical_output",
    "capabilities",
    "input_hash",
    "output_hash",
    "parse_input",
    "schema_for",
    "text_features",
    "validate_input",
]
