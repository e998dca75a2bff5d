"""``[github] archive_store`` picks the contribution archives' content-addressed store: a
folder in the data directory by default, or an S3-compatible bucket whose keys come from a
private (0600) file or the environment and are never shown in an error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from owm_adapters.bootstrap.github import archive_store_of
from owm_adapters.bootstrap.settings import (
    ConfigError,
    CoordinatorSection,
    CoordinatorSettings,
    GitHubSection,
)
from owm_adapters.storage.content import FilesystemContentStore
from owm_adapters.storage.s3_content import S3ContentStore
from tests.adapters.storage import test_content_store_contract as contract

SECRET = "s3-secret-never-shown"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with contract.moto_s3() as url:
        yield url


def settings_with(tmp_path: Path, **github: str) -> CoordinatorSettings:
    return CoordinatorSettings(
        coordinator=CoordinatorSection(data_dir=str(tmp_path / "data")),
        github=GitHubSection(**github),  # type: ignore[arg-type]
    )


def test_the_default_is_a_folder_in_the_data_directory(tmp_path: Path) -> None:
    store = archive_store_of(settings_with(tmp_path), {})
    assert isinstance(store, FilesystemContentStore)
    assert store.root == tmp_path / "data" / "content"


def test_s3_with_a_private_keys_file_stores_and_reads_back_through_the_bucket(
    tmp_path: Path, s3_endpoint: str
) -> None:
    keys = tmp_path / "s3.keys"
    keys.write_text(f"AKIAOWM\n{SECRET}\n")
    keys.chmod(0o600)
    settings = settings_with(tmp_path, archive_store="s3", s3_bucket="owm-boot",
                             s3_endpoint_url=s3_endpoint, s3_credentials_file=str(keys))
    store = archive_store_of(settings, {})
    assert isinstance(store, S3ContentStore) and store.location.bucket == "owm-boot"
    store._client.create_bucket(Bucket="owm-boot")
    assert store.get(store.put(b"archive")) == b"archive"
    from_env = archive_store_of(
        settings_with(tmp_path, archive_store="s3", s3_bucket="owm-boot",
                      s3_endpoint_url=s3_endpoint),
        {"AWS_ACCESS_KEY_ID": "AKIAOWM", "AWS_SECRET_ACCESS_KEY": SECRET},
    )
    assert from_env.get(store.put(b"archive")) == b"archive"


def test_bad_archive_settings_are_refused_with_a_reason_and_no_secret(tmp_path: Path) -> None:
    keys = tmp_path / "s3.keys"
    keys.write_text(f"AKIAOWM\n{SECRET}\n")
    keys.chmod(0o644)
    s3 = settings_with(tmp_path, archive_store="s3", s3_bucket="b")
    cases = [
        (settings_with(tmp_path, archive_store="arweave"), "neither"),
        (settings_with(tmp_path, archive_store="s3"), "needs s3_bucket"),
        (s3, "AWS_SECRET_ACCESS_KEY"),
        (attrs.evolve(s3, github=attrs.evolve(s3.github, s3_credentials_file=str(keys))),
         "chmod 600"),
    ]
    for settings, reason in cases:
        with pytest.raises(ConfigError, match=reason) as refused:
            archive_store_of(settings, {"AWS_ACCESS_KEY_ID": "AKIAOWM"})
        assert SECRET not in str(refused.value)
    keys.chmod(0o600)
    keys.write_text(SECRET)
    one_line = attrs.evolve(s3, github=attrs.evolve(s3.github, s3_credentials_file=str(keys)))
    with pytest.raises(ConfigError, match="second") as refused:
        archive_store_of(one_line, {})
    assert SECRET not in str(refused.value)
