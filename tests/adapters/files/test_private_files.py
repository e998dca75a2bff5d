"""Private state on disk: directories 0700 and files 0600, whatever the umask."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from owm_adapters.files import private_directory, private_file, secure_tree, write_private_bytes
from tests.adapters.files.modes import mode


@pytest.fixture(params=[0o000, 0o022, 0o277])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_a_new_data_directory_and_its_new_parents_are_0700_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    before = mode(tmp_path)

    created = private_directory(tmp_path / "a" / "b" / "data")

    assert [mode(p) for p in (created, created.parent, created.parent.parent)] == [0o700] * 3
    assert mode(tmp_path) == before  # an existing parent is the operator's: left as it was


def test_an_existing_directory_open_to_others_is_tightened_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o755)

    with caplog.at_level(logging.WARNING, logger="owm_adapters.files"):
        private_directory(folder)

    assert mode(folder) == 0o700
    assert f"{folder} was mode 0755; tightened to 0700" in caplog.text


def test_a_file_loses_group_and_other_bits_and_keeps_the_owners(tmp_path: Path) -> None:
    plain, script = tmp_path / "db.sqlite3", tmp_path / "run"
    plain.write_bytes(b"")
    script.write_bytes(b"")
    plain.chmod(0o666)
    script.chmod(0o755)

    private_file(plain)
    private_file(script)
    private_file(tmp_path / "missing")

    assert (mode(plain), mode(script)) == (0o600, 0o700)


def test_a_whole_data_directory_is_made_private_at_start_and_links_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    (root / "provenance").mkdir(parents=True)
    for folder in (root, root / "provenance"):
        folder.chmod(0o777)
    (root / "coordinator.sqlite3").write_bytes(b"x")
    (root / "provenance" / "chain.sqlite3").write_bytes(b"x")
    (root / "coordinator.sqlite3").chmod(0o644)
    (root / "provenance" / "chain.sqlite3").chmod(0o664)
    outside = tmp_path / "shared.txt"
    outside.write_bytes(b"x")
    outside.chmod(0o644)
    (root / "link").symlink_to(outside)

    with caplog.at_level(logging.WARNING, logger="owm_adapters.files"):
        tightened = secure_tree(root)

    assert tightened == 3
    assert mode(root) == mode(root / "provenance") == 0o700
    assert mode(root / "coordinator.sqlite3") == 0o600
    assert mode(root / "provenance" / "chain.sqlite3") == 0o600
    assert mode(outside) == 0o644
    assert "made private" in caplog.text
    assert secure_tree(root) == 0


def test_a_private_write_replaces_the_file_whole_and_leaves_no_partial_file(
    tmp_path: Path, umask: int
) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"old")
    write_private_bytes(path, b"new secret")
    assert path.read_bytes() == b"new secret" and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]


def test_an_exclusive_private_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"first")
    with pytest.raises(FileExistsError):
        write_private_bytes(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["secret"]
