"""Where the real-world OpenTimestamps proofs come from.

The reference client's example proofs are that project's (LGPL) test data, so OWM does not
redistribute them: the tests read them from ``$OWM_OTS_VECTORS``, else from the shared fixture
folder beside the checkout (``../shared/fixtures/ots``). Tests that need them are marked
:data:`requires_vectors`; every other OTS test runs on proofs the tests make themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

VECTORS = Path(
    os.environ.get("OWM_OTS_VECTORS")
    or Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "ots"
)
HAVE_VECTORS = (VECTORS / "hello-world.txt.ots").is_file()
requires_vectors = pytest.mark.skipif(
    not HAVE_VECTORS,
    reason=f"real-world OpenTimestamps vectors not present at {VECTORS} (set OWM_OTS_VECTORS)",
)


def header_358391() -> bytes:
    """The 80-byte header of mainnet block 358391, which hello-world.txt.ots attests."""
    return bytes.fromhex((VECTORS / "block-358391.header.hex").read_text().strip())


def vector_params(folder: str = "") -> list[Any]:
    """One ``pytest.param`` per ``*.ots`` file in ``VECTORS/folder``, for ``parametrize``.

    Without the vectors it is one parameter skipped by :data:`requires_vectors`, so the skip
    says why instead of pytest's "got empty parameter set".
    """
    if not HAVE_VECTORS:
        return [pytest.param("absent", marks=requires_vectors, id="vectors-absent")]
    return [pytest.param(p.name, id=p.name) for p in sorted((VECTORS / folder).glob("*.ots"))]
