"""The documentation hangs together: docs/README.md lists every document, README.md links the
index, and every relative link (and ``#anchor``) in the docs leads somewhere that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "docs" / "README.md"
DOCS = sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md", ROOT / "CONTRIBUTING.md",
               ROOT / "SECURITY.md", ROOT / "deploy" / "README.md"])
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _prose(path: Path) -> str:
    return _FENCE.sub("", path.read_text(encoding="utf-8"))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+\s+(.*)$", _prose(path), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def broken_links(path: Path) -> list[str]:
    """The relative links of ``path`` whose file or anchor does not exist."""
    broken = []
    for target in _LINK.findall(_prose(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def test_the_index_lists_every_document_with_a_line_of_its_own() -> None:
    index = INDEX.read_text(encoding="utf-8")
    listed = set(re.findall(r"^- \[[^\]]+\]\(([^)#]+)\) — \S", index, re.M))
    documents = {p.name for p in (ROOT / "docs").glob("*.md") if p != INDEX}
    assert documents <= listed, f"not in docs/README.md: {sorted(documents - listed)}"
    assert "../deploy/README.md" in listed


def test_the_readme_links_the_docs_index() -> None:
    assert "](docs/README.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_of_a_document_leads_to_an_existing_file_and_heading(path) -> None:
    assert not broken_links(path), broken_links(path)


def test_a_link_to_a_missing_heading_is_found(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n[x](b.md) [y](#title) [z](#nothing)\n")
    assert broken_links(tmp_path / "a.md") == ["b.md: no such file",
                                               "#nothing: no heading with that anchor"]


_TEST_NAME = re.compile(r"\btest_\w+")


def _test_names() -> set[str]:
    """Every test function, test module and test folder name under tests/."""
    tests = ROOT / "tests"
    names = {p.stem for p in tests.rglob("test_*") if p.suffix in ("", ".py")}
    for module in tests.rglob("*.py"):
        names.update(re.findall(r"^\s*(?:async )?def (test_\w+)", module.read_text("utf-8"), re.M))
    return names


def stale_test_names(text: str, known: set[str]) -> list[str]:
    """The test names ``text`` cites that no test has; one ending in ``…`` is a prefix."""
    stale = []
    for match in _TEST_NAME.finditer(text):
        name, cut = match.group(), text[match.end() : match.end() + 1] == "…"
        if not (any(k.startswith(name) for k in known) if cut else name in known):
            stale.append(name + ("…" if cut else ""))
    return stale


def test_every_test_a_document_cites_exists_so_a_defence_can_be_checked() -> None:
    known = _test_names()
    stale = {str(p.relative_to(ROOT)): stale_test_names(p.read_text("utf-8"), known)
             for p in DOCS}
    assert not {doc: names for doc, names in stale.items() if names}


def test_a_renamed_test_still_cited_is_found() -> None:
    known = {"test_a_thing_holds", "test_cli"}
    text = "`test_a_thing_held` and `test_a_thing…` and `test_cli.py` and `test_b…`"
    assert stale_test_names(text, known) == ["test_a_thing_held", "test_b…"]
