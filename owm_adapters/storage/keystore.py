"""Ed25519 identity keys on disk (SRS-NODE-02, SRS-SEC-03).

The key file holds the 32-byte Ed25519 seed as hex on one line, created with mode 0600 and
``O_EXCL`` so that an existing identity is never overwritten. The seed comes from the operating
system's CSPRNG here, at the edge; ``owm_core.identity.keys`` only ever sees the bytes. The key
never
leaves the machine: nothing in this module logs or returns the seed except to build the identity.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from owm_adapters.files import private_directory
from owm_core.errors import DomainError
from owm_core.identity.keys import Identity

ENV_VAR = "OWM_IDENTITY_KEY_PATH"
DEFAULT_PATH = Path("~/.owm/identity.key")


class KeyFileError(DomainError):
    """The identity key file is missing, unreadable, malformed or unsafe."""

    code = "key-file"


def default_key_path(configured: str | None = None) -> Path:
    """Where the identity lives: ``$OWM_IDENTITY_KEY_PATH``, else the configured path, else
    ``~/.owm/identity.key``."""
    chosen = os.environ.get(ENV_VAR) or configured or str(DEFAULT_PATH)
    return Path(chosen).expanduser()


def create_identity(path: Path) -> Identity:
    """Generate a fresh identity and write it to ``path`` (0600); refuse to overwrite."""
    return Identity.from_seed(create_secret(path))


def create_secret(path: Path) -> bytes:
    """Write 32 fresh random bytes to ``path`` as hex (0600) and return them; refuse to
    overwrite. An Ed25519 identity's seed, or a secp256k1 secret (a treasury holder's
    software key on a devnet)."""
    if not path.parent.exists():  # a folder of the operator's own is left as it is
        private_directory(path.parent)
    seed = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; refusing to overwrite an identity "
            "(move it away first if you really want a new one)"
        ) from None
    os.fchmod(fd, 0o600)  # exactly, whatever the umask
    with os.fdopen(fd, "w") as handle:
        handle.write(seed.hex() + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return seed


def load_identity(path: Path) -> Identity:
    """Read the identity at ``path``; refuse files that others can read (mode must be 0600)."""
    return Identity.from_seed(load_secret(path))


def load_secret(path: Path) -> bytes:
    """The 32 secret bytes in the key file at ``path`` (mode must be 0600)."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise KeyFileError(f"no identity at {path}; run `owm-node init` first") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read identity at {path}: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users; run `chmod 600 {path}`")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise KeyFileError(f"{path} is not an OWM identity file (expected 64 hex characters)")
    return seed
