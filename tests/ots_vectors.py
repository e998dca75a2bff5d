"""Where the real-world OpenTimestamps proofs come from.

The OpenTimestamps project's example proofs are its (LGPL) test data, so OWM does not
redistribute them. They are read from ``$OWM_OTS_VECTORS``, else from the shared fixture folder
beside the checkout (``../shared/fixtures/ots``: the reference client's ``examples/``, with its
``invalid/`` proofs), else from ``.cache/ots-vectors`` where ``scripts/fetch-ots-vectors``
(run by ``scripts/test``) puts the ``examples/`` of the ``opentimestamps`` npm package, fetched
from the registry and checked against its pinned integrity. Tests that need them are marked
:data:`requires_vectors`; every other OTS test runs on proofs the tests make themselves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [ROOT.parent / "shared" / "fixtures" / "ots", ROOT / ".cache" / "ots-vectors"]
VECTORS = Path(
    os.environ.get("OWM_OTS_VECTORS")
    or next((c for c in _CANDIDATES if (c / "hello-world.txt.ots").is_file()), _CANDIDATES[0])
)
HAVE_VECTORS = (VECTORS / "hello-world.txt.ots").is_file()
requires_vectors = pytest.mark.skipif(
    not HAVE_VECTORS,
    reason=f"real-world OpenTimestamps vectors not present at {VECTORS} (run "
    "scripts/fetch-ots-vectors or set OWM_OTS_VECTORS)",
)

HEADER_358391 = (
    "02000000b96394585a281b7e5f438fd1c9ed492645a1fd61cb3802040000000000000000007ee445d23ad061af"
    "4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a1e376755f58616186272def6"
)
"""Mainnet block 358391's 80-byte header (public chain data; the test checks its hash)."""


def header_358391() -> bytes:
    """The 80-byte header of mainnet block 358391, which hello-world.txt.ots attests."""
    return bytes.fromhex(HEADER_358391)


def vector_params(folder: str = "") -> list[Any]:
    """One ``pytest.param`` per ``*.ots`` file in ``VECTORS/folder``, for ``parametrize``.

    Without the vectors it is one parameter skipped by :data:`requires_vectors`, so the skip
    says why instead of pytest's "got empty parameter set".
    """
    if not HAVE_VECTORS:
        return [pytest.param("absent", marks=requires_vectors, id="vectors-absent")]
    found = [pytest.param(p.name, id=p.name) for p in sorted((VECTORS / folder).glob("*.ots"))]
    if not found:
        reason = f"{VECTORS} has no {folder}/ proofs (the reference client's repository has them)"
        return [pytest.param("absent", marks=pytest.mark.skip(reason=reason), id="absent")]
    return found
