"""Fetches test data published as npm packages, pinned by version and registry integrity.

Some test data is another project's (real OpenTimestamps proofs, GitHub's own webhook
payloads), so OWM does not redistribute it: like any dependency it is fetched from the npm
registry — one folder of one package's tarball, checked against the registry's sha512
integrity before anything is unpacked — into ``.cache/<name>/`` (git-ignored). Both
``scripts/fetch-ots-vectors`` and ``scripts/fetch-webhook-examples`` use :func:`fetch_package`,
and so do the tests that fetch on first use (``tests/github_examples.py``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import urllib.request
from pathlib import Path

import attrs

CACHE = Path(__file__).resolve().parents[1] / ".cache"


@attrs.frozen
class NpmFixture:
    """One folder (``prefix``) of one npm tarball, pinned; ``marker`` proves it is in place."""

    name: str
    url: str
    integrity: str
    prefix: str
    marker: str

    def default_dest(self) -> Path:
        """``.cache/<name>`` in this checkout."""
        return CACHE / self.name


class FetchError(Exception):
    """The registry is unreachable or the tarball does not match its pinned integrity."""


def fetch_package(fixture: NpmFixture, dest: Path | None = None) -> Path:
    """``dest`` (default ``.cache/<name>``) holding ``fixture``'s folder; downloads and checks
    it the first time. FetchError says why it could not."""
    dest = dest or fixture.default_dest()
    if (dest / fixture.marker).is_file():
        return dest
    try:
        with urllib.request.urlopen(fixture.url, timeout=60) as reply:  # noqa: S310 (pinned https)
            tarball = reply.read()
    except OSError as exc:
        raise FetchError(f"cannot download {fixture.url}: {exc}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()
    if digest != fixture.integrity:
        raise FetchError(f"{fixture.url} does not match its pinned integrity")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith(fixture.prefix):
                continue
            if ".." in Path(member.name).parts:
                continue
            target = partial / member.name[len(fixture.prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            extracted = archive.extractfile(member)
            assert extracted is not None
            target.write_bytes(extracted.read())
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.rename(dest)
    except OSError:  # fetched meanwhile by another process
        shutil.rmtree(partial, ignore_errors=True)
    return dest


OTS_VECTORS = NpmFixture(
    name="ots-vectors",
    url="https://registry.npmjs.org/opentimestamps/-/opentimestamps-0.4.9.tgz",
    integrity="sha512-EWA6nFSeNsD6aSX/Ek0WrWeTT+PKoP7455zWPkyvqf7/h7QsmDDbfFEY8S3Sd9/VxeQcyVu7yW0"
    "SqkvP+Zu/fg==",
    prefix="package/examples/",
    marker="hello-world.txt.ots",
)
"""The ``examples/`` of the ``opentimestamps`` npm package (LGPL-3.0 test data)."""

WEBHOOK_EXAMPLES = NpmFixture(
    name="webhooks-examples",
    url="https://registry.npmjs.org/@octokit/webhooks-examples/-/webhooks-examples-7.6.1.tgz",
    integrity="sha512-De6U3XB6O3DtCa7bKgCMzTHdeopqqZ6SNivMYJnK65ierKL1AnNIA0tkRYCRS7lwGT792d+Ps1Wb"
    "fHlso6MynQ==",
    prefix="package/",
    marker="api.github.com/index.json",
)
"""GitHub's own webhook payload examples (``@octokit/webhooks-examples``, MIT)."""


def main_for(fixture: NpmFixture, argv: list[str], program: str) -> int:
    """The command line of a fetch script: ``program [DEST]``; 0 when in place, 1 (and why)."""
    dest = Path(argv[1]) if len(argv) > 1 else fixture.default_dest()
    try:
        fetch_package(fixture, dest)
    except FetchError as exc:
        print(f"{program}: {exc}")
        return 1
    print(f"{program}: {fixture.url.rsplit('/', 1)[-1]} ({fixture.prefix}) in {dest}")
    return 0
