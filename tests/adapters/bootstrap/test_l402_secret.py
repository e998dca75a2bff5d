"""The L402 master secret on disk: made once, whole, private, and never silently replaced
(every token sold is valid only under it)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from owm_adapters.bootstrap.api import L402_SECRET_BYTES, L402_SECRET_FILE, l402_secret_from
from owm_adapters.bootstrap.settings import ConfigError
from tests.adapters.files.modes import mode


def test_the_secret_is_made_once_private_and_read_back_the_same(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = l402_secret_from(data_dir)
    assert len(made) == L402_SECRET_BYTES
    assert mode(data_dir / L402_SECRET_FILE) == 0o600
    assert l402_secret_from(data_dir) == made
    assert [p.name for p in data_dir.iterdir()] == [L402_SECRET_FILE]  # no partial file left


@pytest.mark.parametrize(
    "content", [b"", b"\x01" * 7, b"\x01" * 33], ids=["empty", "short", "long"]
)
def test_a_secret_file_of_another_length_is_refused_not_used_or_replaced(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / L402_SECRET_FILE
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"holds {len(content)} bytes.*restore it"):
        l402_secret_from(tmp_path)
    assert path.read_bytes() == content


def test_a_secret_readable_by_others_is_made_private_when_read(tmp_path: Path) -> None:
    path = tmp_path / L402_SECRET_FILE
    path.write_bytes(b"\x02" * L402_SECRET_BYTES)
    path.chmod(0o644)
    assert l402_secret_from(tmp_path) == b"\x02" * L402_SECRET_BYTES
    assert mode(path) == 0o600


def test_coordinators_starting_together_on_one_data_directory_all_use_one_secret(
    tmp_path: Path,
) -> None:
    seen: list[bytes] = []
    start = threading.Barrier(8)

    def first_start() -> None:
        start.wait()
        seen.append(l402_secret_from(tmp_path))

    threads = [threading.Thread(target=first_start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and set(seen) == {(tmp_path / L402_SECRET_FILE).read_bytes()}
