"""The public API's part of the composition root: builds the frozen :class:`Api` for a coordinator.

``owm-coordinator serve`` builds the coordinator
(:func:`owm_adapters.bootstrap.coordinator.build_coordinator`)
and passes it here, so the HTTP API and the gRPC control plane share one store, one treasury
Lightning node, one clock and one set of registration use cases. The L402 master secret (it
derives every macaroon's root key) lives in ``<data_dir>/l402.secret`` (mode 0600), created
on first start, so tokens survive restarts.

Like :func:`~owm_adapters.bootstrap.coordinator.build_coordinator`, the builder returns one
frozen value with everything wired at construction: the HTTP shell only serves it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from owm_adapters.bootstrap.coordinator import Coordinator
from owm_adapters.bootstrap.health import coordinator_readiness
from owm_adapters.bootstrap.provenance import ots_chain_of
from owm_adapters.bootstrap.settings import ConfigError
from owm_adapters.files import private_directory, private_file, write_private_bytes
from owm_adapters.models.tinynet import GENESIS
from owm_adapters.probes import Readiness
from owm_adapters.services.api import ApiConfig, ApiServices
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.services.queries import (
    KnowledgeSource,
    QueryConfig,
    QueryService,
    SubModelReaders,
)

if TYPE_CHECKING:
    from owm_adapters.models.reader.installed import VersionSource
    from owm_adapters.services.fl_rounds import FlRoundService

L402_SECRET_FILE = "l402.secret"  # noqa: S105 (a file name, not a secret)
L402_SECRET_BYTES = 32


READERS_DIR = "readers"
"""Where the coordinator's installed reader versions live, under its data directory."""


def l402_secret_from(data_dir: Path) -> bytes:
    """The L402 master secret under ``data_dir``, created (0600, synced to disk whole) if
    missing. Every token sold is valid only under it, so a file of another length — cut short
    by hand or by a disk fault — is refused rather than used as a different secret."""
    path = data_dir / L402_SECRET_FILE
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        private_directory(data_dir)
        with contextlib.suppress(FileExistsError):  # another coordinator made it first
            write_private_bytes(path, os.urandom(L402_SECRET_BYTES), exclusive=True)
        secret = path.read_bytes()
    if len(secret) != L402_SECRET_BYTES:
        raise ConfigError(
            f"{path} holds {len(secret)} bytes, not a {L402_SECRET_BYTES}-byte L402 secret: "
            "restore it from a backup (the tokens sold are valid only under it), or move it "
            "away to start a new one (every token sold so far is then refused)"
        )
    private_file(path)
    return secret


@attrs.frozen
class Api:
    """The public API as built for one coordinator: what the HTTP shell serves.

    ``services`` are the use cases the handlers look up (``call.services.<capability>``);
    ``coordinator`` is the one the gRPC control plane shares; ``l402_secret_file`` is where
    the L402 master secret is kept (None when it lives only in memory).
    """

    services: ApiServices
    coordinator: Coordinator
    l402_secret_file: Path | None
    #: The probes ``/readyz`` runs: the coordinator's backends (:mod:`.health`).
    readiness: Readiness


def build_api(
    coordinator: Coordinator,
    *,
    data_dir: Path | None = None,
    l402_secret: bytes | None = None,
    config: ApiConfig | None = None,
    knowledge: KnowledgeSource | None = None,
    query_config: QueryConfig | None = None,
    readers: SubModelReaders | None = None,
) -> Api:
    """The API over ``coordinator``'s store, treasury, clock, slashing and FL rounds.

    Give ``l402_secret`` (≥ 32 bytes) directly, or a ``data_dir`` to keep it in; with neither,
    a fresh secret is drawn and tokens do not survive a restart (tests, benchmarks).
    With a ``knowledge`` base the conglomerate answers queries (:func:`build_query_service`),
    its transformer readers being ``readers`` if given, else :func:`readers_for`'s.
    """
    secret_file = None
    if l402_secret is None:
        if data_dir is not None:
            secret_file = data_dir / L402_SECRET_FILE
            l402_secret = l402_secret_from(data_dir)
        else:
            l402_secret = os.urandom(L402_SECRET_BYTES)
    services = ApiServices.over(
        coordinator.service,
        l402_secret,
        config,
        slashing=coordinator.slashing,
        queries=build_query_service(
            coordinator, knowledge, query_config,
            readers=readers or readers_for(
                knowledge, data_dir, coordinator.fl,
                int8=(query_config or QueryConfig()).reader_int8,
            ),
        ),
        knowledge=knowledge if isinstance(knowledge, KnowledgeBase) else None,
        fl=coordinator.fl,
        ots_chain="none" if coordinator.fl is None else ots_chain_of(coordinator.fl.timestamping),
        statements=coordinator.governance,
        github=coordinator.github,
        pool=coordinator.pool.pool if coordinator.pool is not None else None,
    )
    return Api(services, coordinator, secret_file, coordinator_readiness(coordinator, knowledge))


def readers_for(
    knowledge: KnowledgeSource | None,
    data_dir: Path | None,
    fl: FlRoundService | None = None,
    *,
    int8: bool = True,
) -> SubModelReaders | None:
    """The sub-models' transformer readers when retrieval runs the real MiniLM encoder: of each
    sub-model, the newest version its FL rounds trained (SRS-COORD-03), else the version
    installed as ``<data_dir>/readers/<sub_model>.owmr`` (docs/models.md), its encoder in int8
    unless ``int8`` is false (``[knowledge] reader_int8``; SRS-PERF-01). None with the
    hashing-embedder twin or no data directory: the BM25 reader answers."""
    from owm_adapters.knowledge.minilm import MiniLmEmbedder

    if not isinstance(knowledge, KnowledgeBase) or data_dir is None:
        return None
    if not isinstance(knowledge.embedder, MiniLmEmbedder):
        return None
    from owm_adapters.models.reader.installed import InstalledReaders, directory_versions

    installed = directory_versions(data_dir / READERS_DIR)
    if fl is None:
        return InstalledReaders(installed, int8=int8)
    trained = fl_reader_versions(fl)
    return InstalledReaders(
        lambda sub_model: trained(sub_model) or installed(sub_model), int8=int8
    )


def fl_reader_versions(fl: FlRoundService) -> VersionSource:
    """The newest release of each sub-model whose FL rounds train the reader adapter
    (``minilm-lora``), as reader version bytes (serialised once per release); None for a
    sub-model that trains another architecture or has no release yet."""
    from owm_adapters.models.architectures import unflatten
    from owm_adapters.models.reader.version import serialise_version
    from owm_adapters.models.reader_rounds import ReaderArchitecture

    made: dict[str, tuple[str, bytes]] = {}

    def trained(sub_model: str) -> tuple[str, bytes] | None:
        data = fl.models.by_name.get(sub_model)
        if data is None or not isinstance(data.releases.arch, ReaderArchitecture):
            return None
        release, flat = data.releases.latest()
        if release == GENESIS:
            return None
        if made.get(sub_model, ("",))[0] != release:
            arch = data.releases.arch
            blob = serialise_version(sub_model, arch.config, unflatten(flat, arch))
            made[sub_model] = (release, blob)
        return made[sub_model]

    return trained


def build_query_service(
    coordinator: Coordinator,
    knowledge: KnowledgeSource | None,
    config: QueryConfig | None = None,
    *,
    readers: SubModelReaders | None = None,
) -> QueryService | None:
    """The query path over ``knowledge`` and the coordinator's market; None without knowledge
    (the query endpoints then answer 503 ``conglomerate-unavailable``)."""
    if knowledge is None:
        return None
    return QueryService(
        knowledge, coordinator.service.market, coordinator.store, coordinator.clock,
        config or QueryConfig(), readers=readers,
    )
