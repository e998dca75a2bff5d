"""Repository analysis over a real source tree of about a thousand files (SRS-PERF-06).

Usage:  .venv/bin/python bench/repo_analysis.py [--sdist PATH]

Fetches the source distribution of SQLAlchemy 2.0.36 from PyPI with pip (1,180 files: Python,
Cython, C, reStructuredText), checks it against its pinned SHA-256, unpacks it into a temporary
folder and times ``owm_adapters.github.tree_analysis.analyse_tree`` over it: every file read,
its language and lines counted, every Python/C function's cyclomatic complexity measured with
lizard, tests found, the score computed with its reasons. ``--sdist`` takes a tarball already
downloaded instead. The last line is ``files=… seconds=…``; SRS-PERF-06 allows 5 minutes,
the aim here is under 60 s.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from owm_adapters.github.tree_analysis import analyse_tree

PACKAGE = "sqlalchemy==2.0.36"
SDIST = "sqlalchemy-2.0.36.tar.gz"
SHA256 = "7f2767680b6d2398aea7082e45a774b2b0767b5c8d8ffb9c8b683088ea9b29c5"


def fetch(cache: Path) -> Path:
    """The pinned sdist, downloaded once into ``cache`` with pip and checked."""
    path = cache / SDIST
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "--no-build-isolation", PACKAGE, "-d", str(cache)],
            check=True,
        )  # fmt: skip
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{path}: sha256 {digest} is not the pinned {SHA256}")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", type=Path, help="an sdist tarball already downloaded")
    args = parser.parse_args()
    sdist = args.sdist or fetch(ROOT / ".cache" / "bench")
    with tempfile.TemporaryDirectory() as folder:
        with tarfile.open(sdist) as archive:
            archive.extractall(folder, filter="data")
        start = time.perf_counter()
        result = analyse_tree(Path(folder))
        seconds = time.perf_counter() - start
    print(f"{sdist.name}: {result.lines} lines; languages {dict(result.languages[:6])}")
    print(f"functions {result.functions}, complexity {result.complexity}, "
          f"complex functions {result.complex_functions}, test files {result.test_files}")
    print(f"score {result.score}: {'; '.join(result.reasons)}")
    print(f"files={result.files} seconds={seconds:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
