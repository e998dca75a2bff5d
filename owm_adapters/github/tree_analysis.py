"""Measuring a source tree for the contribution analysis: languages, lines, functions and their
cyclomatic complexity (``lizard``), tests (rules: :mod:`owm_core.governance.analysis`).

:func:`analyse_tarball` reads a repository archive (GitHub's tarball) member by member in
memory — nothing is extracted, so no path in an archive can write anywhere — and
:func:`analyse_tree` walks a folder (the benchmark's unpacked sdist). Binary files (a NUL byte
in their first 8 KiB) and files over ``MAX_FILE_BYTES`` are counted by language but not parsed.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import lizard

from owm_core.errors import InvalidValue
from owm_core.governance.analysis import (
    CODE_LANGUAGES,
    COMPLEX_FUNCTION_CCN,
    FileFacts,
    RepositoryAnalysis,
    language_of,
    summarise,
)
from owm_core.governance.github_app import ChangedFile

MAX_FILE_BYTES = 1024 * 1024
MAX_FILES = 100_000
_LIZARD_LANGUAGES = CODE_LANGUAGES - {"Shell"}


def file_facts(path: str, data: bytes) -> FileFacts:
    """The facts of one file of ``data`` at ``path``."""
    language = language_of(path)
    if b"\x00" in data[:8_192]:
        return FileFacts(path, language, 0)
    text = data.decode("utf-8", "replace")
    lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    if language not in _LIZARD_LANGUAGES or len(data) > MAX_FILE_BYTES:
        return FileFacts(path, language, lines)
    measured = lizard.analyze_file.analyze_source_code(path, text)
    functions = measured.function_list
    return FileFacts(
        path, language, lines,
        complexity=sum(f.cyclomatic_complexity for f in functions),
        functions=len(functions),
        complex_functions=sum(1 for f in functions
                              if f.cyclomatic_complexity > COMPLEX_FUNCTION_CCN),
    )  # fmt: skip


def analyse_tree(root: Path, authors: Iterable[str] = ()) -> RepositoryAnalysis:
    """The analysis of every file under ``root`` (symbolic links are not followed)."""
    facts: list[FileFacts] = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if len(facts) >= MAX_FILES:
            raise InvalidValue("repository", f"holds more than {MAX_FILES} files")
        facts.append(file_facts(path.relative_to(root).as_posix(), path.read_bytes()))
    return summarise(facts, authors)


def analyse_tarball(
    raw: bytes, authors: Iterable[str] = (), only: Iterable[str] | None = None,
    changes: Sequence[ChangedFile] = (),
) -> RepositoryAnalysis:  # fmt: skip
    """The analysis of a gzipped tarball (GitHub's archive: one top folder, stripped); with
    ``only``, of just those paths (the files a pull request changed, whose ``changes`` give the
    lines added and deleted)."""
    wanted = set(only) if only is not None else None
    facts: list[FileFacts] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                path = member.name.split("/", 1)[1] if "/" in member.name else member.name
                if wanted is not None and path not in wanted:
                    continue
                if len(facts) >= MAX_FILES:
                    raise InvalidValue("repository", f"holds more than {MAX_FILES} files")
                handle = archive.extractfile(member)
                data = handle.read(MAX_FILE_BYTES + 1) if handle is not None else b""
                facts.append(file_facts(path, data))
    except (tarfile.TarError, EOFError, OSError):
        raise InvalidValue("archive", "is not a readable gzipped tarball") from None
    return summarise(facts, authors, changes)
