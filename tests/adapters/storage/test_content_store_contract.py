"""The content-addressed store: on disk and in memory alike, bytes come back only under their
own SHA-256, and a blob altered on disk is refused rather than served."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters.storage.content import FilesystemContentStore, MemoryContentStore
from owm_core.errors import InvalidValue, NotFound
from owm_core.ports.content_store import ContentStore


@pytest.fixture(params=["filesystem", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    if request.param == "memory":
        return MemoryContentStore()
    return FilesystemContentStore(tmp_path / "content")


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2_048))
def test_bytes_come_back_under_their_own_sha256(store: ContentStore, data: bytes) -> None:
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest and store.has(digest) and store.get(digest) == data


def test_an_unknown_digest_is_not_found_and_a_malformed_one_is_refused(
    store: ContentStore,
) -> None:
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(InvalidValue, match="digest"):
        store.get("../../etc/passwd")


def test_a_blob_altered_on_disk_is_refused_and_files_are_private(tmp_path: Path) -> None:
    store = FilesystemContentStore(tmp_path / "content")
    digest = store.put(b"archive")
    path = tmp_path / "content" / digest[:2] / digest
    assert path.stat().st_mode & 0o077 == 0
    path.write_bytes(b"tampered")
    with pytest.raises(InvalidValue, match="altered"):
        store.get(digest)
