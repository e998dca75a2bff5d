"""The content-addressed store: on disk, in memory and in an S3-compatible bucket alike, bytes
come back only under their own SHA-256, and a blob altered on disk or in the bucket is refused
rather than served. The S3 adapter runs against a real S3 server (moto's, on 127.0.0.1,
started by this module), signing its requests with SigV4 as it would against AWS."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owm_adapters.storage.content import FilesystemContentStore, MemoryContentStore
from owm_adapters.storage.s3_content import (
    ObjectStoreUnavailable,
    S3ContentStore,
    S3Credentials,
    S3Location,
)
from owm_core.errors import InvalidValue, NotFound
from owm_core.ports.content_store import ContentStore

KEYS = S3Credentials("AKIAOWMTEST", "owm-test-secret-never-shown")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def moto_s3() -> Iterator[str]:
    """A real S3-compatible HTTP server (moto) on 127.0.0.1; its URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


def s3_store(endpoint: str, bucket: str) -> S3ContentStore:
    """A store on a fresh ``bucket`` of the server at ``endpoint``."""
    store = S3ContentStore(S3Location(bucket, "us-east-1", endpoint), KEYS)
    store._client.create_bucket(Bucket=bucket)
    return store


@pytest.fixture(params=["filesystem", "memory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    if request.param == "memory":
        return MemoryContentStore()
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        return s3_store(endpoint, "owm-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:20])
    return FilesystemContentStore(tmp_path / "content")


# deadline=None: the S3 store answers over HTTP, whose latency follows the machine's load.
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
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


def test_an_object_altered_in_the_bucket_is_refused_and_a_stored_one_is_not_sent_again(
    s3_endpoint: str,
) -> None:
    store = s3_store(s3_endpoint, "owm-altered")
    digest = store.put(b"archive")
    head = store._client.head_object(Bucket="owm-altered", Key=f"content/{digest}")
    assert store.put(b"archive") == digest
    again = store._client.head_object(Bucket="owm-altered", Key=f"content/{digest}")
    assert again["LastModified"] == head["LastModified"]
    store._client.put_object(Bucket="owm-altered", Key=f"content/{digest}", Body=b"tampered")
    with pytest.raises(InvalidValue, match="altered"):
        store.get(digest)


def test_an_unreachable_or_missing_bucket_is_a_clear_error_that_never_shows_the_keys(
    s3_endpoint: str,
) -> None:
    missing = S3ContentStore(S3Location("owm-no-such-bucket", "us-east-1", s3_endpoint), KEYS)
    with pytest.raises(ObjectStoreUnavailable, match=r"PUT .* owm-no-such-bucket") as refused:
        missing.put(b"data")
    gone = S3ContentStore(S3Location("b", "us-east-1", f"http://127.0.0.1:{_free_port()}"), KEYS)
    with pytest.raises(ObjectStoreUnavailable, match="HEAD") as unreachable:
        gone.has("0" * 64)
    for message in (str(refused.value), str(unreachable.value), repr(KEYS)):
        assert KEYS.secret_access_key not in message and KEYS.access_key_id not in message
