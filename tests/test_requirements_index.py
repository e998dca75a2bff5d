"""The requirements index (scripts/gen-requirements): every SRS ID the code cites is a real one.

The script's own ``--check`` (run by scripts/test) also fails when docs/requirements.md is stale;
this test runs the citation check in-process, so a failure names the file, line and offending ID.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import given
from hypothesis import strategies as st

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gen-requirements"


def load_script() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("gen_requirements", str(SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = module  # dataclasses look their module up there
    loader.exec_module(module)
    return module


gen = load_script()
areas = st.sampled_from(["NODE", "LN", "STAKE", "SEC", "PERF"])


def test_every_requirement_the_code_cites_is_listed_with_a_summary_in_requirements_toml():
    found = gen.problems()
    assert not found, "\n".join(found)


def test_a_slash_list_names_each_of_its_requirements():
    assert gen.expand("(SRS-SEC-01/02/03)") == ["SRS-SEC-01", "SRS-SEC-02", "SRS-SEC-03"]
    assert gen.expand("SRS-STAKE-02, -03 and SRS-LN-13") == [
        "SRS-STAKE-02",
        "SRS-STAKE-03",
        "SRS-LN-13",
    ]


@given(area=areas, first=st.integers(1, 20), length=st.integers(0, 10))
def test_a_range_names_every_requirement_from_its_first_to_its_last(area, first, length):
    last = first + length
    ids = gen.expand(f"see SRS-{area}-{first:02d}..{last:02d}.")
    assert ids == [f"SRS-{area}-{n:02d}" for n in range(first, last + 1)]


def test_spec_sections_are_told_apart_from_requirement_ids():
    line = "Register a node (spec 4.12.2; SRS 2.1, spec §10.3, SRS-API-04)"
    assert gen.sections(line) == ["4.12.2", "2.1", "10.3"]
    assert gen.expand(line) == ["SRS-API-04"]


def test_a_reason_for_no_test_is_shown_and_refused_once_a_test_cites_the_requirement(tmp_path):
    """[not_tested] explains a "—" in the Tested column; a test citing the requirement makes the
    explanation false, and the check says so instead of keeping a stale reason."""
    one, two, three = (f"SRS-{'SEC'}-0{n}" for n in (1, 2, 3))  # spelt so the index skips them
    (tmp_path / "docs").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / gen.CATALOGUE).write_text(
        f'[areas]\nSEC = "Security"\n[requirements]\n"{one}" = "One."\n"{two}" = "Two."\n'
        f'[sections]\n[not_tested]\n"{one}" = "not built"\n"{three}" = "nowhere"\n',
        encoding="utf-8",
    )
    index = gen.render(tmp_path)
    assert f"| {one} | One. | — | — (not built) |" in index
    assert f"| {two} | Two. | — | — |" in index
    assert [p for p in gen.problems(tmp_path) if one in p] == []
    assert any(three in p for p in gen.problems(tmp_path))

    (tmp_path / "tests" / "test_one.py").write_text(f'"""One holds ({one})."""\n')
    (cited,) = [p for p in gen.problems(tmp_path) if one in p]
    assert "a test does" in cited
    assert f"| {one} | One. | — | `tests/test_one.py` |" in gen.render(tmp_path)
