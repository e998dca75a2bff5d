"""The sub-models' reader: MiniLM + LoRA adapter + heads, its parameters, training and versions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from owm_adapters.models.reader import (
    DEFAULT_CONFIG,
    VersionInvalid,
    layout,
    parameter_count,
    parse_version,
    serialise_version,
)
from owm_adapters.models.reader.encoder import int8_backend
from owm_adapters.models.reader.model import ReaderModel, genesis_arrays
from owm_core.knowledge.training_pairs import cloze_pairs

DOCUMENTS = [
    "Paris is the capital and largest city of France. The river Seine flows through Paris.",
    "Tokyo is the capital of Japan. Mount Fuji rises to 3,776 metres.",
    "Rome is the capital of Italy. The Alps form its northern border.",
]


@pytest.fixture(scope="module")
def reader() -> ReaderModel:
    return ReaderModel.genesis("owm-geo")


def test_genesis_is_the_same_everywhere_for_one_sub_model_and_differs_between_them():
    first, again = genesis_arrays("owm-geo"), genesis_arrays("owm-geo")
    other = genesis_arrays("owm-history")
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other[0])
    names = [name for name, _ in layout()]
    assert all(not a.any() for n, a in zip(names, first, strict=True) if n.endswith(".B"))


def test_a_version_is_the_adapter_and_heads_only_a_few_hundred_kilobytes_at_most():
    assert [name for name, _ in layout()][:2] == ["lora.layer4.query.A", "lora.layer4.query.B"]
    assert layout()[-4:][0][0] == "heads.span.weight"
    blob = serialise_version("owm-geo", DEFAULT_CONFIG, genesis_arrays("owm-geo"))
    assert parameter_count() * 4 < len(blob) < 512 * 1024


def test_parameters_follow_the_layout_and_round_trip_through_set_parameters(reader):
    arrays = reader.parameters()
    assert [a.shape for a in arrays] == [shape for _, shape in layout()]
    assert all(a.dtype == np.float32 for a in arrays)
    changed = [a + np.float32(0.5) for a in arrays]
    reader.set_parameters(changed)
    try:
        assert all(np.array_equal(a, b) for a, b in zip(reader.parameters(), changed, strict=True))
    finally:
        reader.set_parameters(genesis_arrays("owm-geo"))


def test_set_parameters_refuses_a_wrong_shape_or_a_non_finite_value(reader):
    arrays = reader.parameters()
    with pytest.raises(ValueError, match="expected"):
        reader.set_parameters(arrays[:-1])
    with pytest.raises(ValueError, match="must have shape"):
        reader.set_parameters([arrays[0].T, *arrays[1:]])
    poisoned = [a.copy() for a in arrays]
    poisoned[-1][0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        reader.set_parameters(poisoned)
    assert all(np.array_equal(a, b) for a, b in zip(reader.parameters(), arrays, strict=True))


def test_a_version_serialises_to_the_same_bytes_and_parses_back():
    arrays = genesis_arrays("owm-science")
    blob = serialise_version("owm-science", DEFAULT_CONFIG, arrays)
    assert blob == serialise_version("owm-science", DEFAULT_CONFIG, [a.copy() for a in arrays])
    assert hashlib.sha256(blob).digest() != hashlib.sha256(
        serialise_version("owm-geo", DEFAULT_CONFIG, arrays)
    ).digest()
    parsed = parse_version(blob)
    assert parsed.sub_model == "owm-science" and parsed.config == DEFAULT_CONFIG
    assert all(np.array_equal(a, b) for a, b in zip(parsed.arrays, arrays, strict=True))


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda b: b"PK" + b[2:], "wrong magic"),
        (lambda b: b[:-4], "shorter"),
        (lambda b: b + b"\0\0\0\0", "trailing"),
        (lambda b: b.replace(b'"rank":8', b'"rank":4'), "layout"),
        (lambda b: b[:-4] + np.array([np.inf], dtype="<f4").tobytes(), "not finite"),
    ],
)
def test_a_tampered_or_foreign_version_is_refused_with_its_reason(mangle, reason):
    blob = serialise_version("owm-geo", DEFAULT_CONFIG, genesis_arrays("owm-geo"))
    with pytest.raises(VersionInvalid, match=reason):
        parse_version(mangle(blob))


def test_reading_returns_spans_that_are_literally_in_their_passages(reader):
    passages = [(f"p{i}", text) for i, text in enumerate(DOCUMENTS)]
    spans = reader.read("What is the capital of Japan?", passages, top_k=3)
    assert 1 <= len(spans) <= 3
    for span in spans:
        text = dict(passages)[span.passage_id]
        assert text[span.start : span.end] == span.text and span.text
        assert 0.0 <= span.relevance <= 1.0 and 0.0 <= span.span_probability <= 1.0
    assert [s.score for s in spans] == sorted((s.score for s in spans), reverse=True)


def test_a_training_step_lowers_the_loss_and_is_reproducible_from_its_seed(reader):
    pairs = cloze_pairs(DOCUMENTS, negatives=1)[:8]
    genesis = genesis_arrays("owm-geo")
    _, before = reader.evaluate(pairs)
    try:
        count, _ = reader.fit(pairs, epochs=3, lr=5e-3, batch_size=8, seed=4)
        _, after = reader.evaluate(pairs)
        trained = reader.parameters()
        reader.set_parameters(genesis)
        reader.fit(pairs, epochs=3, lr=5e-3, batch_size=8, seed=4)
        again = reader.parameters()
    finally:
        reader.set_parameters(genesis)
    assert count == 8 and after < before
    for a, b in zip(trained, again, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_int8_encoder_reads_like_the_float32_one_and_refuses_training():
    arrays = genesis_arrays("owm-geo")
    full, small = ReaderModel("owm-geo", arrays), ReaderModel("owm-geo", arrays, int8=True)
    passages = [(f"p{i}", text) for i, text in enumerate(DOCUMENTS)]
    question = "Which river flows through Paris?"
    assert small.int8 and int8_backend() in {"torch-dynamic", "bitsandbytes"}
    full_best, small_best = full.read(question, passages)[0], small.read(question, passages)[0]
    assert abs(full_best.relevance - small_best.relevance) < 0.1
    with pytest.raises(ValueError, match="int8"):
        small.fit(cloze_pairs(DOCUMENTS)[:2])


def test_a_span_is_looked_for_only_in_the_sentences_bm25_ranks_best(reader):
    from owm_adapters.models.reader.regions import bm25_regions

    passages = [(f"p{i}", text) for i, text in enumerate(DOCUMENTS)]
    question = "Which river flows through Paris?"
    regions = bm25_regions(question, passages, 1)
    ((start, end),) = regions[0]
    assert DOCUMENTS[0][start:end] == "The river Seine flows through Paris."
    assert regions[1:] == [[], []]
    (span,) = reader.read(question, passages, top_k=3, sentences=1)
    assert span.passage_id == "p0" and start <= span.start < span.end <= end
    assert reader.read("Quantum chromodynamics?", passages, sentences=2) == []
