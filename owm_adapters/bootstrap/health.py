"""The coordinator's readiness probes, composed from the adapters it runs on.

One probe per outside part the coordinator needs (``/readyz``; :mod:`owm_adapters.probes`):

* ``database``: a ``SELECT 1`` on the SQL store (the in-memory twin is always up);
* ``schema``: the SQL store is at the newest alembic revision of ``migrations/`` (a database
  restored from an older backup, or migrated down, answers ``behind``);
* ``lightning``: the treasury node answers ``node_uri`` (LND ``GetInfo``, CLN ``getinfo``);
* ``chain``: the chain FL model versions' proofs are checked against answers its tip height
  (the embedded chain, or with remote calendars the ``[chain]`` Bitcoin node);
* ``vector_store``: the knowledge base's vector store counts its collection (only when the
  conglomerate's knowledge base is enabled).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text

from owm_adapters.bootstrap.coordinator import Coordinator
from owm_adapters.probes import DEFAULT_TIMEOUT_S, NotReady, Probe, Readiness
from owm_adapters.provenance.embedded import EmbeddedProvenance
from owm_adapters.provenance.ots import OpenTimestamps
from owm_adapters.services.knowledge import KnowledgeBase
from owm_adapters.storage.sql.migrate import schema_is_current
from owm_adapters.storage.sql.store import SqlRepositories

BEHIND = "behind"
PUBLIC_MAX_AGE_S = 2.0
"""``/readyz`` is public: a result is answered again for this long instead of probing anew."""


def coordinator_readiness(
    coordinator: Coordinator,
    knowledge: object | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Readiness:
    """The readiness probes of ``coordinator`` (and of ``knowledge`` when it is a knowledge
    base), each bounded by ``timeout_s`` (see the module docstring)."""
    probes: dict[str, Probe] = {"database": lambda: None}
    store = coordinator.store
    if isinstance(store, SqlRepositories):
        engine = store.database.engine

        def database() -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        def schema() -> None:
            if not schema_is_current(engine):
                raise NotReady(BEHIND)

        probes["database"], probes["schema"] = database, schema
    treasury = coordinator.treasury
    probes["lightning"] = _discarding(treasury.node_uri)
    timestamping = coordinator.fl.timestamping if coordinator.fl is not None else None
    if isinstance(timestamping, EmbeddedProvenance | OpenTimestamps):
        probes["chain"] = _discarding(timestamping.chain_height)
    if isinstance(knowledge, KnowledgeBase):
        base = knowledge
        probes["vector_store"] = _discarding(lambda: base.store.count(base.collection))
    return Readiness(probes, timeout_s, max_age_s=PUBLIC_MAX_AGE_S)


def _discarding(call: Callable[[], object]) -> Probe:
    """A probe that succeeds when ``call`` returns, whatever it returns."""

    def probe() -> None:
        call()

    return probe
