"""What a repository or pull request analysis finds, and the score it earns, with its reasons
(seed 001: contribution → analysis → reward; SRS-PERF-06 bounds how long it may take).

The facts of each file (language, lines, cyclomatic complexity, functions, whether it is a
test) are measured by an adapter (``owm_adapters/github/tree_analysis.py``, with ``lizard``);
this module sums them into a :class:`RepositoryAnalysis` and scores it by rules that say why:
work that touches tests and stays simple scores higher than a large, complex change without
tests. A score is 0..100; every point added or taken away comes with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import attrs

from owm_core import fields
from owm_core.governance.github_app import ChangedFile

LANGUAGES = {
    ".py": "Python", ".pyi": "Python", ".rs": "Rust", ".go": "Go", ".js": "JavaScript",
    ".mjs": "JavaScript", ".ts": "TypeScript", ".tsx": "TypeScript", ".jsx": "JavaScript",
    ".c": "C", ".h": "C", ".cc": "C++", ".cpp": "C++", ".hpp": "C++", ".java": "Java",
    ".kt": "Kotlin", ".swift": "Swift", ".rb": "Ruby", ".php": "PHP", ".cs": "C#",
    ".scala": "Scala", ".lua": "Lua", ".sh": "Shell", ".md": "Markdown", ".rst": "reStructuredText",
    ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML", ".json": "JSON", ".html": "HTML",
    ".css": "CSS", ".sql": "SQL", ".proto": "Protocol Buffers",
}  # fmt: skip
CODE_LANGUAGES = frozenset(
    {"Python", "Rust", "Go", "JavaScript", "TypeScript", "C", "C++", "Java", "Kotlin", "Swift",
     "Ruby", "PHP", "C#", "Scala", "Lua", "Shell"}
)  # fmt: skip
COMPLEX_FUNCTION_CCN = 15
"""A function above this cyclomatic complexity counts as complex."""


def language_of(path: str) -> str:
    """The language of ``path`` by its extension ("Other" when unknown)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    return LANGUAGES.get(name[dot:].lower(), "Other") if dot > 0 else "Other"


def is_test_path(path: str) -> bool:
    """Whether ``path`` is a test by the usual conventions (tests/ folders, test_*.py, *_test.go,
    *.test.ts, *_spec.rb …)."""
    lowered = path.lower()
    parts = lowered.split("/")
    name = parts[-1]
    return (
        any(p in {"test", "tests", "testing", "__tests__", "spec"} for p in parts[:-1])
        or name.startswith("test_")
        or any(marker in name for marker in ("_test.", ".test.", "_spec.", ".spec."))
    )


@attrs.frozen
class FileFacts:
    """What was measured of one file."""

    path: str = attrs.field(validator=fields.text(max_len=4_096))
    language: str
    lines: int = attrs.field(validator=fields.integer(0))
    complexity: int = attrs.field(default=0, validator=fields.integer(0))
    functions: int = attrs.field(default=0, validator=fields.integer(0))
    complex_functions: int = attrs.field(default=0, validator=fields.integer(0))

    @property
    def is_test(self) -> bool:
        """Whether the file is a test."""
        return is_test_path(self.path)


@attrs.frozen
class RepositoryAnalysis:
    """The summed facts of a tree (or of the files a pull request changed) and its score."""

    files: int
    lines: int
    languages: tuple[tuple[str, int], ...]
    """(language, lines), most lines first."""
    functions: int
    complexity: int
    complex_functions: int
    test_files: int
    authors: tuple[str, ...]
    score: int
    reasons: tuple[str, ...]
    files_changed: int = 0
    """For a pull request: the files it changed (removed ones included); 0 for a tree."""
    lines_added: int = 0
    lines_deleted: int = 0

    def to_json(self) -> str:
        """The analysis as the API's ``result`` (canonical JSON)."""
        return json.dumps(
            {
                "files": self.files, "lines": self.lines, "languages": dict(self.languages),
                "functions": self.functions, "complexity": self.complexity,
                "complex_functions": self.complex_functions, "tests_touched": self.test_files,
                "authors": list(self.authors), "score": self.score,
                "reasons": list(self.reasons), "files_changed": self.files_changed,
                "lines_added": self.lines_added, "lines_deleted": self.lines_deleted,
            },
            sort_keys=True, separators=(",", ":"),
        )  # fmt: skip


def score_of(facts: Sequence[FileFacts]) -> tuple[int, tuple[str, ...]]:
    """The score (0..100) of a set of files, and the reason for each part of it."""
    code = [f for f in facts if f.language in CODE_LANGUAGES]
    tests = [f for f in facts if f.is_test]
    lines = sum(f.lines for f in code)
    score, reasons = 40, ["base 40"]
    if lines:
        size = min(20, 2 + lines // 50)
        score += size
        reasons.append(f"+{size} for {lines} lines of code")
    if tests:
        score += 20
        reasons.append(f"+20 for {len(tests)} test file(s) touched")
    else:
        reasons.append("+0: no tests touched")
    functions = sum(f.functions for f in code)
    complex_ = sum(f.complex_functions for f in code)
    if functions and not complex_:
        score += 10
        reasons.append(f"+10: no function exceeds cyclomatic complexity {COMPLEX_FUNCTION_CCN}")
    elif functions:
        penalty = min(30, complex_ * 100 // functions)
        score -= penalty
        reasons.append(
            f"-{penalty}: {complex_} of {functions} functions exceed cyclomatic complexity "
            f"{COMPLEX_FUNCTION_CCN}"
        )
    if any(f.language == "Markdown" or f.language == "reStructuredText" for f in facts):
        score += 5
        reasons.append("+5 for documentation touched")
    return max(0, min(100, score)), tuple(reasons)


def summarise(
    facts: Sequence[FileFacts], authors: Iterable[str] = (), changes: Sequence[ChangedFile] = ()
) -> RepositoryAnalysis:
    """The analysis of ``facts`` (one per file), credited to ``authors``; with ``changes`` (a
    pull request's changed files) also how many files and lines it added and deleted."""
    by_language: dict[str, int] = {}
    for f in facts:
        by_language[f.language] = by_language.get(f.language, 0) + f.lines
    score, reasons = score_of(facts)
    return RepositoryAnalysis(
        files=len(facts),
        lines=sum(f.lines for f in facts),
        languages=tuple(sorted(by_language.items(), key=lambda kv: (-kv[1], kv[0]))),
        functions=sum(f.functions for f in facts),
        complexity=sum(f.complexity for f in facts),
        complex_functions=sum(f.complex_functions for f in facts),
        test_files=sum(1 for f in facts if f.is_test),
        authors=tuple(sorted({a for a in authors if a})),
        score=score,
        reasons=reasons,
        files_changed=len(changes),
        lines_added=sum(c.additions for c in changes),
        lines_deleted=sum(c.deletions for c in changes),
    )
