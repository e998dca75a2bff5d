"""``owm release``: the maintainer's side of signed, timestamped release packages (SRS 4.1).

A release is published as four files: the package archive, its manifest ``M.json`` (written by
``owm release manifest``: canonical JSON naming the archive's SHA-256), the maintainers'
signatures ``M.json.sig`` (one ``owm release sign`` per maintainer) and the OpenTimestamps proof
``M.json.ots`` (the standard ``ots stamp M.json``, or ``owm ots stamp --file M.json`` on a
devnet; the file's SHA-256 *is* the manifest digest). Nodes check all of it with
``owm-node verify-release``. See docs/node-setup.md and docs/ots-verification.md.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import click

from owm_adapters.storage import keystore
from owm_cli.errors import OwmGroup
from owm_core.errors import InvalidValue
from owm_core.provenance.packages import (
    ReleaseManifest,
    ReleaseSignature,
    sign_release,
    signatures_from_json,
    signatures_to_json,
)


@click.group(cls=OwmGroup)
def release() -> None:
    """Maintainers: describe, sign and (with `owm ots stamp`) timestamp an OWM release."""


@release.command()
@click.argument("archive", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", "version", required=True, help="The release version, e.g. 0.2.0.")
@click.option("--notes", default="", help="One line of release notes (signed with the rest).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the manifest [default: ARCHIVE.release.json].")
def manifest(archive: Path, version: str, notes: str, output: Path | None) -> None:
    """Write the canonical manifest of ARCHIVE; refuses to overwrite one."""
    digest = hashlib.sha256()
    with archive.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    value = ReleaseManifest(version=version, archive_sha256=digest.hexdigest(),
                            created_at=int(time.time()), notes=notes)
    target = output or archive.with_name(archive.name + ".release.json")
    if target.exists():
        raise InvalidValue("output", f"{target} already exists; refusing to overwrite it")
    target.write_bytes(value.canonical())
    click.echo(f"manifest   {target}")
    click.echo(f"digest     {value.digest.hex()}  (stamp it: ots stamp {target})")


@release.command()
@click.argument("manifest_path", metavar="M.json",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Your Ed25519 key file (mode 0600, as `owm-node init` writes one).")
def sign(manifest_path: Path, key_path: Path) -> None:
    """Add your signature to M.json.sig (created if absent; re-signing replaces yours)."""
    identity = keystore.load_identity(key_path)
    value = ReleaseManifest.from_json(manifest_path.read_bytes())
    sig_path = manifest_path.with_name(manifest_path.name + ".sig")
    existing = signatures_from_json(sig_path.read_bytes()) if sig_path.exists() else ()
    mine = ReleaseSignature(identity.public_key_hex, sign_release(identity, value))
    others = [s for s in existing if s.signer != identity.public_key_hex]
    sig_path.write_bytes(signatures_to_json([*others, mine]))
    click.echo(f"signed     {value.name} {value.version} as {identity.public_key_hex}")
    click.echo(f"signatures {sig_path} ({len(others) + 1})")
