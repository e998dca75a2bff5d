"""Which training pairs FL rounds of a reader adapter use (SRS-COORD-03, SRS 2.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from owm_adapters.knowledge import demo_data
from owm_adapters.models.reader.heldout import heldout_answers
from owm_adapters.models.reader_rounds import PAIRS_PER_ROUND, ReaderArchitecture, split_pairs
from owm_core.errors import InvalidValue
from owm_core.knowledge.datasets import parse_dataset
from owm_core.knowledge.reader import normalise

SUB_MODELS = ("owm-geo", "owm-history", "owm-science")


def documents(sub_model: str):
    raw = (Path(demo_data.__file__).parent / f"{sub_model}.json").read_bytes()
    return parse_dataset(raw).documents


@pytest.mark.parametrize("sub_model", SUB_MODELS)
def test_no_pair_a_round_trains_or_scores_on_answers_a_held_out_question(sub_model: str):
    train, held = split_pairs(documents(sub_model))
    forbidden = {normalise(a) for a in heldout_answers()}
    assert train and held
    assert not {normalise(p.answer) for p in train + held if p.answerable} & forbidden


@pytest.mark.parametrize("sub_model", SUB_MODELS)
def test_held_out_pairs_never_reach_a_round_and_rounds_walk_through_every_shard(sub_model: str):
    docs = documents(sub_model)
    train, held = split_pairs(docs)
    arch = ReaderArchitecture()
    shards = -(-len(train) // PAIRS_PER_ROUND)
    seen = []
    for number in range(shards):
        fields = arch.round_data(number, 1_000, docs)
        assert fields["partition_id"] == number and 0 < len(fields["pairs"]) <= PAIRS_PER_ROUND
        seen += [(p["question"], p["passage"]) for p in fields["pairs"]]
    assert sorted(seen) == sorted((p.question, p.passage) for p in train)
    assert not {p.question for p in held} & {question for question, _ in seen}
    assert arch.round_data(shards, 1_000, docs)["partition_id"] == 0  # round-robin


def test_a_sub_model_without_documents_has_no_round_data_and_a_task_without_pairs_fails():
    arch = ReaderArchitecture()
    with pytest.raises(InvalidValue) as caught:
        arch.round_data(1, 1_000, ())
    assert caught.value.field == "pairs"
    with pytest.raises(ValueError, match=r"input\.pairs"):
        arch.local_data({"sub_model": "owm-geo"})
