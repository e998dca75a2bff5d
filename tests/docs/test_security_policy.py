"""SECURITY.md is a responsible-disclosure policy (SRS-SEC-09): where to report privately, what a
report should hold, and how soon the reporter hears back."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "SECURITY.md"


def _section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of ``text``."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"SECURITY.md has no '## {heading}' section"
    return match.group(1)


def test_the_security_policy_says_where_to_report_what_to_include_and_when_to_expect_an_answer():
    """A reporter must learn from SECURITY.md alone how to disclose responsibly (SRS-SEC-09):
    privately (not a public issue), with version, impact and steps, acknowledged within a stated
    time, and with a disclosure deadline agreed up front."""
    report = _section(POLICY.read_text(encoding="utf-8"), "Reporting a vulnerability")
    assert "Do not open a public issue" in report
    assert re.search(r"Report privately through .*Security Advisory", report, re.S)
    for what in ("version", "impact", "proof of concept"):
        assert what in report, what
    assert re.search(r"acknowledgement within \*\*\d+ hours\*\*", report)
    assert re.search(r"\*\*\d+ days\*\*.*before\s+public\s+disclosure", report, re.S)
