"""The installed reader of each sub-model, loaded once and kept warm for the query path (SRS 2.1).

:class:`InstalledReaders` answers "read these passages with sub-model X's reader": it asks its
``versions`` source for X's installed version (``(version id, version bytes)`` or None), parses
it (:func:`~owm_adapters.models.reader.version.parse_version`), builds the
:class:`~owm_adapters.models.reader.model.ReaderModel` once per version and reads. With no
installed version it uses X's genesis reader only when ``genesis`` is set (an untrained adapter
answers worse than BM25, ``bench/query_quality.py``). When no reader can be had — no version,
a version that does not parse, a missing encoder or library — it returns None and the query path
keeps the nodes' BM25 readings (the baseline and fallback); a failure is logged once per version
and not retried for :data:`RETRY_AFTER_S` seconds. The source is asked at most every
:data:`VERSION_CHECK_S` per sub-model, so a query does not read a version file or the database.

:func:`directory_versions` is the simple source: ``<dir>/<sub_model>.owmr`` files, the bytes of
a version, whose id is ``<sub_model>@<first 12 hex digits of their SHA-256>``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from owm_adapters.models.reader.model import ReaderModel
from owm_adapters.models.reader.version import parse_version

log = logging.getLogger(__name__)

VersionSource = Callable[[str], tuple[str, bytes] | None]
"""A sub-model's installed version: ``(version id, bytes)``, or None when there is none."""
VERSION_SUFFIX = ".owmr"
RETRY_AFTER_S = 60.0
VERSION_CHECK_S = 1.0
"""How long a sub-model's installed version, once asked of the source, is taken as current:
the query path reads per query, the source reads a file or the FL releases in the database."""
GENESIS = "genesis"


def version_id(sub_model: str, blob: bytes) -> str:
    """``<sub_model>@<12 hex digits of SHA-256(blob)>``."""
    return f"{sub_model}@{hashlib.sha256(blob).hexdigest()[:12]}"


def directory_versions(directory: Path) -> VersionSource:
    """Versions read from ``<directory>/<sub_model>.owmr`` (module docstring)."""

    def installed(sub_model: str) -> tuple[str, bytes] | None:
        path = directory / f"{sub_model}{VERSION_SUFFIX}"
        if not path.is_file():
            return None
        blob = path.read_bytes()
        return version_id(sub_model, blob), blob

    return installed


def no_versions(_sub_model: str) -> None:
    """The source of a coordinator with no installed reader version."""
    return None


@attrs.define(eq=False)
class InstalledReaders:
    """Sub-model readers for the query path, one warm model per installed version."""

    _versions: VersionSource = no_versions
    _genesis: bool = attrs.field(default=False, kw_only=True)
    _int8: bool = attrs.field(default=False, kw_only=True)
    _monotonic: Callable[[], float] = attrs.field(default=time.monotonic, kw_only=True)
    _lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)
    _models: dict[str, tuple[str, ReaderModel]] = attrs.field(init=False, factory=dict)
    _failed: dict[str, float] = attrs.field(init=False, factory=dict)
    _asked: dict[str, tuple[float, tuple[str, bytes] | None]] = attrs.field(
        init=False, factory=dict
    )

    def _installed(self, sub_model: str) -> tuple[str, bytes] | None:
        """The source's answer for ``sub_model``, asked at most every :data:`VERSION_CHECK_S`."""
        now = self._monotonic()
        with self._lock:
            asked = self._asked.get(sub_model)
        if asked is not None and now - asked[0] < VERSION_CHECK_S:
            return asked[1]
        found = self._versions(sub_model)
        with self._lock:
            self._asked[sub_model] = (now, found)
        return found

    def model(self, sub_model: str) -> tuple[str, ReaderModel] | None:
        """``(version id, warm model)`` of ``sub_model``'s installed version (loaded on first
        use, its encoder in int8 when asked), or None when it has no usable reader."""
        found = self._installed(sub_model)
        if found is None and not self._genesis:
            return None
        wanted = found[0] if found is not None else f"{sub_model}@{GENESIS}"
        with self._lock:
            current = self._models.get(sub_model)
            if current is not None and current[0] == wanted:
                return current
            failed_at = self._failed.get(wanted)
            if failed_at is not None and self._monotonic() - failed_at < RETRY_AFTER_S:
                return None
            try:
                if found is None:
                    model = ReaderModel.genesis(sub_model)
                else:
                    version = parse_version(found[1])
                    if version.sub_model != sub_model:
                        raise ValueError(f"the version is {version.sub_model}'s")
                    model = ReaderModel(sub_model, version.arrays, version.config)
                if self._int8:
                    model.quantize()
            except Exception as exc:  # any failure leaves the BM25 reading in place
                self._failed[wanted] = self._monotonic()
                log.warning("reader %s cannot be loaded (BM25 answers instead): %s", wanted, exc)
                return None
            self._models[sub_model] = (wanted, model)
            return wanted, model

    def read(
        self, sub_model: str, query: str, passages: Sequence[tuple[str, str]], top_k: int
    ) -> tuple[str, list[tuple[str, int, int, float]]] | None:
        """``(version id, [(passage id, start, end, score)…])`` best first, or None when
        ``sub_model`` has no usable reader."""
        loaded = self.model(sub_model)
        if loaded is None:
            return None
        label, model = loaded
        spans = model.read(query, passages, top_k)
        return label, [(s.passage_id, s.start, s.end, s.score) for s in spans]
