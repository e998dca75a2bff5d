"""Private state on disk: data directories 0700, their files 0600, whatever the umask.

A coordinator's and a node's data directory hold what must stay theirs: SQLite databases (the
registry, the embedded Lightning ledger with its preimages, the task log), identity keys, the
L402 secret. :func:`private_directory` creates such a directory and sets its mode with
``chmod`` after creating it (``mkdir``'s mode is filtered by the umask); a directory that
already exists open to others is tightened, with a warning naming it. :func:`private_file` does
the same for a file another library just created (SQLite creates its files 0644 under the usual
umask). :func:`secure_tree` tightens a whole data directory at start, so state written by an
older release, or by a library that ignores the modes, is private from then on.

Only group and other permissions are taken away from files (an owner's execute bit stays), so
nothing the owner could do before breaks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIRECTORY = 0o700
PRIVATE_FILE = 0o600
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def private_directory(path: Path) -> Path:
    """Create ``path`` (and missing parents) as a 0700 directory; tighten it if it is open.

    Parents created here are 0700 too; existing parents are left as they are (they may be the
    operator's, such as a home directory).
    """
    missing = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIRECTORY)
    for created in missing:
        os.chmod(created, PRIVATE_DIRECTORY)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode != PRIVATE_DIRECTORY:
        if mode & _OTHERS:
            log.warning("%s was mode %04o; tightened to 0700", path, mode)
        os.chmod(path, PRIVATE_DIRECTORY)
    return path


def private_file(path: Path) -> None:
    """Take group and other permissions away from an existing file (no-op when missing)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & _OTHERS:
        os.chmod(path, mode & ~_OTHERS)


def write_private_text(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write ``text`` to ``path`` as a 0600 file from its first byte (a configuration may hold
    secrets), whole (:func:`write_private_bytes`); ``exclusive`` refuses an existing file."""
    write_private_bytes(path, text.encode("utf-8"), exclusive=exclusive)


def write_private_bytes(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` as a 0600 file, all or nothing: written and synced to disk
    under a temporary name beside it, then moved into place and the directory synced, so a
    crash leaves the old file or the whole new one, never a part (a secret cut short would be
    read back as another secret). ``exclusive``: ``FileExistsError`` when ``path`` exists,
    checked by the move itself (a hard link), so of two processes racing to create it one wins
    and the other finds its file."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), PRIVATE_FILE)  # exactly, whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(partial, path)
        else:
            os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def secure_tree(root: Path) -> int:
    """Make ``root`` 0700 and everything below private (directories 0700, files without
    group/other bits); symbolic links are neither followed nor changed. Returns how many entries
    were tightened, and says so in one log line when any were."""
    private_directory(root)
    tightened = 0
    for folder, directories, files in os.walk(root):
        for name in directories:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIRECTORY:
                os.chmod(path, PRIVATE_DIRECTORY)
                tightened += 1
        for name in files:
            path = Path(folder, name)
            if path.is_symlink():
                continue
            if stat.S_IMODE(path.stat().st_mode) & _OTHERS:
                private_file(path)
                tightened += 1
    if tightened:
        log.warning("%s: %d files or directories were open to other users; made private",
                    root, tightened)
    return tightened
