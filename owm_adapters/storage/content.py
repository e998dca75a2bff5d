"""Content-addressed stores: a folder on disk (the default) and an in-memory twin.

:class:`FilesystemContentStore` keeps each blob in ``<root>/<aa>/<digest>`` (mode 0600 in a
0700 tree), written to a temporary name and renamed, so a reader never sees half a blob;
reading checks the bytes against their digest, so a blob altered on disk is refused, not
served. Both implement :class:`owm_core.ports.content_store.ContentStore` and pass one contract
test.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

from owm_adapters.files import private_directory, private_file
from owm_core.errors import InvalidValue, NotFound

_DIGEST = re.compile(r"[0-9a-f]{64}")


def checked_digest(digest: str) -> str:
    """``digest`` if it is 64 lower-case hex digits; InvalidValue otherwise (no path tricks)."""
    if not _DIGEST.fullmatch(digest):
        raise InvalidValue("digest", "must be 64 lower-case hex digits (SHA-256)")
    return digest


class FilesystemContentStore:
    """Blobs under ``root`` by SHA-256 (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store ``data``; its hex SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.is_file():
            return digest
        private_directory(self.root)
        private_directory(path.parent)
        partial = path.with_name(f".{digest}.{os.getpid()}.{threading.get_ident()}")
        partial.write_bytes(data)
        private_file(partial)
        partial.replace(path)
        return digest

    def get(self, digest: str) -> bytes:
        """The blob of ``digest``; NotFound if none, InvalidValue if it was altered."""
        try:
            data = self._path(checked_digest(digest)).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no content {digest}") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise InvalidValue("digest", f"the stored content of {digest} was altered")
        return data

    def has(self, digest: str) -> bool:
        """Whether ``digest`` is stored."""
        return self._path(checked_digest(digest)).is_file()


class MemoryContentStore:
    """Blobs in a dict (tests, devnets without a data directory)."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        """Store ``data``; its hex SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._blobs[digest] = bytes(data)
        return digest

    def get(self, digest: str) -> bytes:
        """The blob of ``digest``; NotFound if none."""
        with self._lock:
            found = self._blobs.get(checked_digest(digest))
        if found is None:
            raise NotFound(f"no content {digest}")
        return found

    def has(self, digest: str) -> bool:
        """Whether ``digest`` is stored."""
        with self._lock:
            return checked_digest(digest) in self._blobs
