"""The ``minilm-lora`` FL architecture: a sub-model's reader adapter trained on training pairs
built from its contributed documents (SRS-COORD-03, SRS 2.2).

What a round moves is the reader's trainable arrays only — the LoRA matrices and the span and
rerank heads of :class:`~owm_adapters.models.reader.model.ReaderModel`, in
:func:`~owm_adapters.models.reader.layout.layout` order (25,731 float32 values by default);
the frozen MiniLM encoder never travels.

**Which pairs a round trains on.** The coordinator builds the self-supervised cloze pairs of every
document contributed to the sub-model (:func:`owm_core.knowledge.training_pairs.cloze_pairs`, seed
0, one negative per answerable pair; no sentence holding an answer of the held-out questions of
``bench/query_quality.py``, :func:`~owm_adapters.models.reader.heldout.heldout_answers`, becomes a
pair). A pair whose question hashes into the lowest :data:`HOLDOUT_PERCENT` per cent is held out:
the coordinator scores every new version on (up to :data:`HOLDOUT_PAIRS` of) them and no round
trains on them. The training pairs are cut into shards of :data:`PAIRS_PER_ROUND`; round ``n``
trains shard ``n mod shards`` (``partition_id``) and carries its pairs in the task input
(``pairs``), so a node needs nothing but the task to train, and every replica of the round trains
the same pairs from the same start with the same seed (redundant replicas agree). A sub-model with
no contributed documents has no pairs: its rounds wait (the coordinator logs why once) until a
dataset is contributed.

Loading MiniLM takes seconds once per process; every later reader costs a copy of the frozen
encoder (well under a second), so :meth:`ReaderArchitecture.genesis` builds a fresh one each
time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from owm_adapters.models.reader.model import ReaderModel
    from owm_core.knowledge.datasets import Document
    from owm_core.knowledge.training_pairs import TrainingPair

from owm_adapters.models.reader.heldout import heldout_answers
from owm_adapters.models.reader.layout import ARCHITECTURE, DEFAULT_CONFIG, ReaderConfig, layout

PAIRS_PER_ROUND = 16
"""Training pairs one round's task carries (one step of 16 on two CPU cores: seconds)."""
HOLDOUT_PERCENT = 10
HOLDOUT_PAIRS = 32
"""Most held-out pairs a version is scored on (the coordinator's CPU pays for each)."""


def _question_key(question: str) -> int:
    digest = hashlib.sha256(b"owm/fl-pairs/v1\x00" + question.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def split_pairs(documents: Sequence[Document]) -> tuple[list[TrainingPair], list[TrainingPair]]:
    """``(training pairs, held-out pairs)`` of ``documents`` (module docstring), each ordered
    by a hash of the question, so that a shard mixes documents and a question's negatives stay
    with it."""
    from owm_core.knowledge.training_pairs import cloze_pairs

    pairs = cloze_pairs([d.text for d in documents], exclude=heldout_answers(), seed=0)
    keyed = sorted(enumerate(pairs), key=lambda item: (_question_key(item[1].question), item[0]))
    train = [p for _, p in keyed if _question_key(p.question) % 100 >= HOLDOUT_PERCENT]
    held = [p for _, p in keyed if _question_key(p.question) % 100 < HOLDOUT_PERCENT]
    return train, held


class ReaderArchitecture:
    """The ``minilm-lora`` :class:`~owm_core.ports.fl_model.ModelArchitecture` (the readers'
    default configuration; tests pass a shorter ``max_length``)."""

    name = ARCHITECTURE

    def __init__(self, config: ReaderConfig = DEFAULT_CONFIG) -> None:
        self.config = config

    def layout(self) -> Sequence[tuple[str, tuple[int, ...]]]:
        """The reader's trainable arrays (known without loading the encoder)."""
        return layout(self.config)

    def genesis(self, sub_model: str) -> ReaderModel:
        """A fresh genesis reader of ``sub_model``."""
        from owm_adapters.models.reader.model import ReaderModel

        return ReaderModel.genesis(sub_model, self.config)

    def round_data(
        self, round_number: int, partitions: int, documents: Sequence[Document]
    ) -> dict[str, Any]:
        """Shard ``round_number mod shards`` of the training pairs, as ``partition_id`` and
        ``pairs`` (JSON objects of :func:`~owm_core.knowledge.training_pairs.pair_fields`);
        InvalidValue naming ``pairs`` when the documents give none."""
        from owm_core.errors import InvalidValue
        from owm_core.knowledge.training_pairs import pair_fields

        train, _ = split_pairs(documents)
        if not train:
            raise InvalidValue("pairs", "no training pairs: no documents contributed yet")
        shards = max(1, min(partitions, -(-len(train) // PAIRS_PER_ROUND)))
        shard = round_number % shards
        chosen = train[shard * PAIRS_PER_ROUND : (shard + 1) * PAIRS_PER_ROUND]
        return {"partition_id": shard, "pairs": [pair_fields(p) for p in chosen]}

    def examples(self, task_input: Mapping[str, Any]) -> int:
        """The task's training pairs (at most :data:`PAIRS_PER_ROUND`)."""
        return len(task_input.get("pairs") or ())

    def local_data(self, task_input: Mapping[str, Any]) -> list[TrainingPair]:
        """The task's ``pairs``; ValueError when it carries none (nothing to train on)."""
        from owm_core.knowledge.training_pairs import pair_from_fields

        pairs = [pair_from_fields(p) for p in task_input.get("pairs") or ()]
        if not pairs:
            raise ValueError("input.pairs: the sub-model has no training pairs yet")
        return pairs

    def holdout(self, documents: Sequence[Document]) -> list[TrainingPair]:
        """Up to :data:`HOLDOUT_PAIRS` held-out pairs of ``documents``."""
        return split_pairs(documents)[1][:HOLDOUT_PAIRS]
