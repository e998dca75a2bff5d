"""Measuring source trees and archives for the contribution analysis, and the score's rules."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_adapters.github.tree_analysis import analyse_tarball, file_facts
from owm_core.errors import InvalidValue
from owm_core.governance.analysis import FileFacts, is_test_path, language_of, score_of
from owm_core.governance.github_app import ChangedFile

COMPLEX = "def f(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(20))


def tarball(files: dict[str, bytes], top: str = "o-r-abc123") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for path, data in files.items():
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_an_archive_is_measured_by_language_lines_complexity_and_tests() -> None:
    raw = tarball({
        "pkg/core.py": COMPLEX.encode(),
        "pkg/simple.py": b"def g():\n    return 1\n",
        "tests/test_core.py": b"def test_f():\n    assert True\n",
        "README.md": b"# hi\n",
        "logo.png": b"\x89PNG\x00\x00binary",
    })  # fmt: skip
    result = json.loads(analyse_tarball(raw, ["alice"]).to_json())
    assert result["files"] == 5 and result["tests_touched"] == 1
    assert result["languages"]["Python"] == COMPLEX.count("\n") + 4
    assert result["complex_functions"] == 1 and result["functions"] == 3
    assert result["authors"] == ["alice"]
    assert any("exceed cyclomatic complexity" in r for r in result["reasons"])
    assert 0 <= result["score"] <= 100


def test_only_the_changed_files_of_a_pull_request_are_measured_when_asked() -> None:
    raw = tarball({"a.py": b"x = 1\n", "b.py": b"y = 2\n"})
    changes = (ChangedFile("b.py", "modified", 1, 1), ChangedFile("c.py", "removed", 0, 4))
    measured = analyse_tarball(raw, ["bob", "", "alice", "bob"], only=["b.py"], changes=changes)
    assert measured.files == 1 and measured.authors == ("alice", "bob")
    assert (measured.files_changed, measured.lines_added, measured.lines_deleted) == (2, 1, 5)


def test_a_file_that_is_not_an_archive_is_refused_naming_it() -> None:
    with pytest.raises(InvalidValue, match="archive"):
        analyse_tarball(b"not a tarball")


def test_paths_that_climb_out_of_the_archive_are_only_read_never_written() -> None:
    raw = tarball({"../../etc/passwd.py": b"x = 1\n"})
    assert analyse_tarball(raw).files == 1  # measured in memory; nothing extracted


def test_languages_and_tests_follow_the_usual_conventions() -> None:
    assert language_of("src/main.rs") == "Rust" and language_of("Makefile") == "Other"
    assert is_test_path("tests/unit/a.py") and is_test_path("pkg/foo_test.go")
    assert is_test_path("web/app.test.ts") and not is_test_path("src/contest.py")
    assert file_facts("a.py", b"def f():\n    pass").lines == 2


@given(
    lines=st.integers(0, 5_000), tests=st.booleans(), functions=st.integers(0, 50),
    complex_=st.integers(0, 50),
)  # fmt: skip
def test_a_score_is_within_0_and_100_and_touching_tests_never_lowers_it(
    lines: int, tests: bool, functions: int, complex_: int
) -> None:
    complex_ = min(complex_, functions)
    code = FileFacts("pkg/a.py", "Python", lines, functions=functions, complex_functions=complex_)
    test = FileFacts("tests/test_a.py", "Python", 10)
    without, reasons = score_of([code])
    with_tests, _ = score_of([code, test] if tests else [code])
    assert 0 <= without <= 100 and reasons[0] == "base 40"
    assert with_tests >= without
