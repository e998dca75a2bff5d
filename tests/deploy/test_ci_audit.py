"""The dependency audit in CI (SRS-SEC-10): .github/workflows/ci.yml runs pip-audit on every push
and pull request against .ci/requirements.lock, the hash-locked set of everything OWM installs.

The audit needs the advisory database, which OWM's own machines cannot reach, so it is never run
here; what is checked is that the workflow asks for it and that the lock it audits is complete.
There is no Rust code for cargo-audit and no built image for trivy.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
LOCK = ROOT / ".ci" / "requirements.lock"


def _name(requirement: str) -> str:
    """A requirement's project name, normalised as PEP 503 does."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pinned(lock: str) -> dict[str, list[str]]:
    """Each locked project and the hashes on its entry."""
    entries = re.findall(r"^([A-Za-z0-9][^\s=]*)==\S+((?:\s*\\\n\s+--hash=\S+)*)", lock, re.M)
    return {_name(name): re.findall(r"--hash=(\S+)", hashes) for name, hashes in entries}


def test_every_pull_request_runs_pip_audit_strictly_over_the_hash_locked_dependencies() -> None:
    """Each pull request gets a pip-audit job that fails on any known vulnerability and audits
    exactly the locked, hashed set (SRS-SEC-10)."""
    workflow: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as True
    assert "pull_request" in triggers
    audits = [
        shlex.split(step["run"])
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("run", "").startswith("pip-audit")
    ]
    assert len(audits) == 1
    (audit,) = audits
    assert {"--strict", "--require-hashes"} <= set(audit)
    assert audit[audit.index("-r") + 1] == ".ci/requirements.lock"


def test_the_audited_lock_pins_with_hashes_every_dependency_pyproject_declares() -> None:
    """A dependency added to pyproject.toml without relocking (scripts/lock-requirements) would
    never be audited (SRS-SEC-10)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    declared.discard(_name(project["name"]))  # the extras that name other extras
    pinned = _pinned(LOCK.read_text(encoding="utf-8"))
    assert sorted(declared - set(pinned)) == []
    assert [name for name, hashes in pinned.items() if not hashes] == []
