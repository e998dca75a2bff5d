"""The data operations' own statuses for ``test_documented_statuses`` (one scenario each):
201/200 with a knowledge base, 409 for a dataset another contributor gave, 503 without one.
The knowledge base stays attached afterwards so the generic probes reach the handlers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from owm_adapters.knowledge.minilm import HashingEmbedder
from owm_adapters.knowledge.qdrant import MemoryVectorStore
from owm_adapters.services.knowledge import KnowledgeBase

DATASET = {
    "name": "rivers",
    "sub_models": ["owm-geo"],
    "source": "atlas",
    "licence": "CC0-1.0",
    "documents": [{"title": "Nile", "text": "The Nile flows north into the Mediterranean."}],
}


def _attach(probe: Any) -> KnowledgeBase:
    w = probe.world
    if w.services.knowledge is None:
        kb = KnowledgeBase(w.repos, HashingEmbedder(), MemoryVectorStore())
        kb.register_sub_model("owm-geo", "Geography of the world.", w.clock.now())
        w.serve(knowledge=kb)
    knowledge: KnowledgeBase = w.services.knowledge
    return knowledge


def _unavailable(probe: Any) -> None:
    w = probe.world
    knowledge = w.services.knowledge
    w.serve(knowledge=None)
    probe.send(headers=w.api_key(), body=DATASET if probe.op.body is not None else None)
    w.serve(knowledge=knowledge)


def submit(probe: Any) -> None:
    _unavailable(probe)
    _attach(probe)
    w = probe.world
    probe.send(headers=w.api_key("alice"), raw=json.dumps(DATASET).encode())
    probe.send(headers=w.api_key("mallory"), raw=json.dumps(DATASET).encode())


def listing(probe: Any) -> None:
    _unavailable(probe)
    _attach(probe)
    probe.send(headers=probe.world.api_key())


DATA_SCENARIOS: dict[str, Callable[[Any], None]] = {
    "submitDataset": submit,
    "listDatasets": listing,
    "listSubModels": listing,
}
