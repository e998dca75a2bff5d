"""Checks shared by the metrics tests: parse an exposition, hold it to the naming conventions,
and let ``promtool check metrics`` lint it where promtool is installed (scripts/test installs
Debian's ``prometheus`` package when it can)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

PROMTOOL = shutil.which("promtool")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_OWN_PREFIXES = ("owm_", "process_", "python_")


def scrape(url: str) -> str:
    """The body of ``GET url``."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        return str(reply.read().decode("utf-8"))


def samples(text: str) -> dict[str, list[Sample]]:
    """Every sample of the exposition by sample name, after checking the conventions."""
    by_name: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        assert _NAME.match(family.name), family.name
        assert family.name.startswith(_OWN_PREFIXES), family.name
        assert family.documentation, f"{family.name} has no HELP"
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name
            by_name.setdefault(sample.name, []).append(sample)
    if PROMTOOL is not None:
        lint = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
        )
        assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    return by_name


def value(by_name: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The value of the one sample ``name`` whose labels include ``labels``."""
    [match] = [
        s for s in by_name.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return float(match.value)
