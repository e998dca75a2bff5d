"""What tests read of file modes: one entry's mode, and every entry open to other users."""

from __future__ import annotations

import stat
from pathlib import Path


def mode(path: Path) -> int:
    """The permission bits of ``path`` (a link's own, not its target's)."""
    return stat.S_IMODE(path.lstat().st_mode)


def open_to_others(root: Path) -> list[str]:
    """Every entry under ``root`` (and itself) that a group or other user may use."""
    return [
        f"{path} {mode(path):04o}"
        for path in (root, *root.rglob("*"))
        if not path.is_symlink() and mode(path) & 0o077
    ]
