"""The knowledge base: sub-model registry, data contributions and retrieval (SRS 2.1, SRS 2.2).

:class:`KnowledgeBase` is the application service behind ``owm data submit``,
``POST /v1/data/datasets`` and the query path's retrieval. It composes four ports — the
repositories (sub-models, datasets, documents, credits, model releases), an
:class:`~owm_core.ports.embeddings.Embedder`, a
:class:`~owm_core.ports.vector_store.VectorStore` and optionally a
:class:`~owm_core.ports.timestamping.Timestamping` — with the pure rules of
:mod:`owm_core.knowledge.datasets`, :mod:`owm_core.knowledge.submodels` and
:mod:`owm_core.knowledge.retrieval`.

Submitting a dataset: parse and validate (size, UTF-8, schema) → content hash → refuse a dataset
another contributor already gave (the first keeps the attribution; the same contributor sending
it again gets the stored record back) → chunk → embed (document title + passage) → index in the
vector store → OTS-stamp the digest → store record and documents → each sub-model it feeds gets a
new version (``owm-v1.0.<n datasets>``) whose digest covers its description, kind, encoder and
every dataset digest; that version is stamped and published as a ``ModelRelease`` (so
``GET /v1/model/versions`` lists it). Indexing happens before the record is stored, so a crash
leaves at worst unreferenced vectors that the next submission of the same dataset overwrites.

Routing evidence: for each sub-model, the cosine similarity of the query to its domain
description (embedded once and cached) and to its closest passage.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from importlib import resources
from typing import Any

import attrs
import cattrs
import numpy as np
import numpy.typing as npt
from cattrs.gen import make_dict_unstructure_fn, override

from owm_core.errors import CalendarUnavailable, Conflict, InvalidValue, must_exist
from owm_core.knowledge.datasets import (
    Dataset,
    DatasetRecord,
    Passage,
    parse_dataset,
    passage_embedding_text,
    passages_of,
    record_for,
)
from owm_core.knowledge.retrieval import (
    DEFAULT_DATA_SHARE_PPM,
    DataCredit,
    Retrieval,
    RetrievedPassage,
    SubModelScore,
    credit_data_contributors,
)
from owm_core.knowledge.submodels import SubModel, SubModelKind
from owm_core.knowledge.vectors import VectorPoint
from owm_core.ports.embeddings import Embedder
from owm_core.ports.repositories import Repositories
from owm_core.ports.timestamping import Timestamping
from owm_core.ports.vector_store import VectorStore
from owm_core.provenance.releases import ModelRelease
from owm_core.provenance.versions import ModelVersion, ProofStatus, new_model_version

log = logging.getLogger(__name__)

COLLECTION = "owm_passages"
FIRST_VERSION = "owm-v0.1.0"
DEMO_CONTRIBUTOR = "owm-demo"
DEMO_FILES = ("owm-geo.json", "owm-science.json", "owm-history.json")
_EMBED_BATCH = 64
_VERSION = re.compile(r"owm-v([0-9]+)\.([0-9]+)\.([0-9]+)")


def _clip(score: float) -> float:
    return max(-1.0, min(1.0, float(score)))


_PAYLOADS = cattrs.Converter(detailed_validation=False)
"""How a passage travels as a vector-store point's payload: every field but its id (the point's
own id), sub-models as a JSON list."""
_PAYLOADS.register_unstructure_hook_func(lambda t: t == tuple[str, ...], list)
_PAYLOADS.register_unstructure_hook(
    Passage, make_dict_unstructure_fn(Passage, _PAYLOADS, passage_id=override(omit=True))
)


def _payload(p: Passage) -> dict[str, Any]:
    payload: dict[str, Any] = _PAYLOADS.unstructure(p)
    return payload


def _passage(point_id: str, payload: Any) -> Passage:
    return _PAYLOADS.structure({**payload, "passage_id": point_id}, Passage)


@attrs.define
class KnowledgeBase:
    """Sub-models, contributed datasets and retrieval over them (see the module docstring)."""

    repositories: Repositories
    embedder: Embedder
    store: VectorStore
    timestamping: Timestamping | None = None
    collection: str = COLLECTION
    #: Publish each new sub-model version as a ModelRelease (GET /v1/model/versions).
    publish_versions: bool = True
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _domains: dict[str, tuple[str, npt.NDArray[np.float32]]] = attrs.field(
        factory=dict, init=False
    )
    _ready: bool = attrs.field(default=False, init=False)

    def _ensure(self) -> None:
        if not self._ready:
            self.store.ensure_collection(self.collection, self.embedder.dimension)
            self._ready = True

    # --- registry ------------------------------------------------------------------------------

    def sub_models(self) -> list[SubModel]:
        """Every registered sub-model, by name."""
        return list(self.repositories.sub_models.list())

    def sub_model(self, name: str) -> SubModel | None:
        """The sub-model called ``name``, or None."""
        return self.repositories.sub_models.get(name)

    def register_sub_model(
        self,
        name: str,
        description: str,
        now: int,
        kind: SubModelKind = SubModelKind.RETRIEVAL_READER,
    ) -> SubModel:
        """Register a sub-model (idempotent: the same name and description returns the stored one).

        A different description under a taken name is a Conflict: a domain change is a new
        sub-model, not a silent rewrite of what the router matched on.
        """
        with self._lock:
            stored = self.repositories.sub_models.get(name)
            if stored is not None:
                if stored.description != description or stored.kind != kind:
                    raise Conflict(f"sub-model {name} is registered with another description")
                return stored
            model = SubModel(
                name=name, description=description, kind=kind, version=FIRST_VERSION,
                created_at=now,
            )
            self.repositories.sub_models.add(model)
            return model

    def set_hosts(self, name: str, node_ids: Sequence[str]) -> SubModel:
        """Record which nodes host sub-model ``name``; NotFound if it is not registered."""
        with self._lock:
            stored = must_exist(
                self.repositories.sub_models.get(name), f"sub-model {name} is not registered"
            )
            updated = stored.with_hosts(node_ids)
            self.repositories.sub_models.save(updated)
            return updated

    # --- contributions -------------------------------------------------------------------------

    def submit(self, raw: bytes, contributor: str, now: int) -> DatasetRecord:
        """Validate, hash, index, stamp and store one ``owm-dataset/1`` document (module doc)."""
        return self.submit_dataset(parse_dataset(raw), contributor, now)

    def submit_dataset(self, dataset: Dataset, contributor: str, now: int) -> DatasetRecord:
        """:meth:`submit` for an already-parsed dataset."""
        with self._lock:
            stored = self.repositories.datasets.get(dataset.dataset_id)
            if stored is not None:
                if stored.contributor != contributor:
                    raise Conflict(
                        f"dataset {dataset.dataset_id} was already contributed by another "
                        "contributor"
                    )
                return stored
            models = []
            for name in dataset.sub_models:
                model = self.repositories.sub_models.get(name)
                if model is None:
                    known = ", ".join(m.name for m in self.repositories.sub_models.list())
                    raise InvalidValue(
                        "sub_models", f"{name!r} is not a registered sub-model (known: {known})"
                    )
                models.append(model)
            passages = passages_of(dataset, contributor)
            self._index(passages)
            record = record_for(
                dataset, contributor, now, len(passages), self._stamp(bytes.fromhex(dataset.digest))
            )
            with self.repositories.atomic():
                self.repositories.datasets.add(record, dataset.documents)
                for model in models:
                    self._new_version(model.with_dataset(record.dataset_id), now)
            return record

    def _index(self, passages: Sequence[Passage]) -> None:
        self._ensure()
        for start in range(0, len(passages), _EMBED_BATCH):
            batch = passages[start : start + _EMBED_BATCH]
            vectors = self.embedder.embed([passage_embedding_text(p) for p in batch])
            self.store.upsert(
                self.collection,
                [
                    VectorPoint(point_id=p.passage_id, vector=v, payload=_payload(p))
                    for p, v in zip(batch, vectors, strict=True)
                ],
            )

    def _stamp(self, digest: bytes) -> bytes | None:
        if self.timestamping is None:
            return None
        try:
            return self.timestamping.stamp(digest)
        except CalendarUnavailable as e:
            log.warning("could not stamp %s: %s", digest.hex(), e.message)
            return None

    def _new_version(self, model: SubModel, now: int) -> SubModel:
        """Bump ``model``'s patch version, hash it over its data, stamp and publish it."""
        digests = []
        for dataset_id in model.dataset_ids:
            record = self.repositories.datasets.get(dataset_id)
            if record is not None:
                digests.append(record.digest)
        found = _VERSION.match(model.version)
        if found is None:  # pragma: no cover - SubModel validates the pattern
            raise InvalidValue("version", f"cannot bump {model.version}")
        major, minor, patch = (int(x) for x in found.groups())
        version = f"owm-v{major}.{minor}.{patch + 1}"
        extra = {**model.version_metadata(digests), "encoder": self.embedder.model_id}
        built: ModelVersion = new_model_version(
            version, model.name, {}, now, parent=model.version_digest, extra_metadata=extra
        )
        proof = self._stamp(built.digest_bytes)
        release = ModelRelease(
            version=built,
            proof_status=ProofStatus.NONE if proof is None else ProofStatus.PENDING,
            checked_at=now,
            ots_proof=proof,
        )
        if self.publish_versions and self.repositories.releases.get(release.release_id) is None:
            self.repositories.releases.add(release)
        updated = attrs.evolve(model, version=version, version_digest=built.digest)
        self.repositories.sub_models.save(updated)
        return updated

    def datasets(
        self, sub_model: str | None = None, contributor: str | None = None, limit: int = 100
    ) -> list[DatasetRecord]:
        """Stored contributions (filtered if asked), oldest first."""
        return list(self.repositories.datasets.list(sub_model, contributor, limit))

    def dataset(self, dataset_id: str) -> DatasetRecord:
        """The contribution ``dataset_id``; NotFound if unknown."""
        return must_exist(
            self.repositories.datasets.get(dataset_id), f"dataset {dataset_id} is unknown"
        )

    def reindex(self) -> int:
        """Rebuild the vector index from the stored documents (e.g. after changing encoder)."""
        count = 0
        for record in self.repositories.datasets.list(limit=1_000_000):
            documents = self.repositories.datasets.documents(record.dataset_id)
            dataset = Dataset(
                name=record.name, sub_models=record.sub_models, documents=tuple(documents),
                description=record.description,
            )
            passages = passages_of(dataset, record.contributor)
            self.store.delete_dataset(self.collection, record.dataset_id)
            self._index(passages)
            count += len(passages)
        return count

    def sync_index(self) -> int:
        """Re-index from the stored documents if the vector store does not hold every passage
        (e.g. a fresh ``:memory:`` Qdrant over a persistent database); passages re-indexed."""
        self._ensure()
        expected = sum(r.n_passages for r in self.repositories.datasets.list(limit=1_000_000))
        if self.store.count(self.collection) == expected:
            return 0
        return self.reindex()

    # --- retrieval -----------------------------------------------------------------------------

    def _domain_vector(self, model: SubModel) -> npt.NDArray[np.float32]:
        with self._lock:
            cached = self._domains.get(model.name)
        if cached is None or cached[0] != model.description:
            vector = self.embedder.embed([model.description])[0]
            cached = (model.description, vector)
            with self._lock:
                self._domains[model.name] = cached
        return cached[1]

    def search(
        self, query: str, limit: int = 5, sub_models: Sequence[str] | None = None
    ) -> Retrieval:
        """Per-sub-model scores and the ``limit`` best passages for ``query``, embedded once.

        ``sub_models`` restricts the passages (not the scores) to those sub-models.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidValue("query", "must be non-blank text")
        self._ensure()
        vector = self.embedder.embed([query])[0]
        models = self.sub_models()
        scores = []
        for model in models:
            domain = _clip(float(np.dot(self._domain_vector(model), vector)))
            best = self.store.search(self.collection, vector, 1, [model.name])
            data = _clip(best[0].score) if best else -1.0
            scores.append(SubModelScore(sub_model=model.name, domain=domain, data=data))
        scores.sort(key=lambda s: (-s.score, s.sub_model))
        hits = self.store.search(self.collection, vector, limit, sub_models)
        passages = [
            RetrievedPassage(passage=_passage(h.point_id, h.payload), score=_clip(h.score))
            for h in hits
        ]
        passages.sort(key=lambda p: (-p.score, p.passage.passage_id))
        return Retrieval(query=query, scores=tuple(scores), passages=tuple(passages))

    def retrieve(
        self, query: str, limit: int = 5, sub_models: Sequence[str] | None = None
    ) -> list[RetrievedPassage]:
        """The ``limit`` passages closest to ``query`` (of ``sub_models`` if given), best first."""
        return list(self.search(query, limit, sub_models).passages)

    def route_scores(self, query: str) -> list[SubModelScore]:
        """How close ``query`` is to each sub-model's domain and data, best first."""
        return list(self.search(query, 0).scores)

    # --- crediting -----------------------------------------------------------------------------

    def credit(
        self,
        query_id: str,
        used: Sequence[RetrievedPassage | Passage],
        cost_msat: int,
        now: int,
        share_ppm: int = DEFAULT_DATA_SHARE_PPM,
    ) -> tuple[DataCredit, ...]:
        """Credit the contributors whose passages grounded query ``query_id``'s answer.

        Idempotent per query: a second call returns what was recorded the first time.
        """
        with self._lock:
            stored = self.repositories.data_credits.for_query(query_id)
            if stored:
                return tuple(stored)
            credits = credit_data_contributors(used, cost_msat, share_ppm)
            self.repositories.data_credits.add(query_id, credits, now)
            return credits

    def credited_msat(self, contributor: str) -> int:
        """Everything credited to ``contributor`` so far."""
        return self.repositories.data_credits.total_msat(contributor)

    # --- demo data -----------------------------------------------------------------------------

    def load_demo_data(self, now: int) -> list[DatasetRecord]:
        """Register the demo sub-models, index their CC0 datasets (idempotent)."""
        root = resources.files("owm_adapters.knowledge.demo_data")
        for row in json.loads(root.joinpath("sub_models.json").read_text("utf-8")):
            self.register_sub_model(row["name"], row["description"], now, SubModelKind(row["kind"]))
        records = []
        for name in DEMO_FILES:
            raw = root.joinpath(name).read_bytes()
            records.append(self.submit(raw, DEMO_CONTRIBUTOR, now))
        self.sync_index()
        return records

    def close(self) -> None:
        """Close the vector store."""
        self.store.close()
