"""Datasets (format, validation, content hash, chunking), sub-models, and crediting data
contributors (SRS 2.1, SRS 2.2)."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.knowledge.datasets import (
    MAX_DATASET_BYTES,
    PASSAGE_MAX_CHARS,
    Dataset,
    Document,
    chunk_text,
    dataset_from_object,
    normalise_whitespace,
    parse_dataset,
    passages_of,
    record_for,
)
from owm_core.knowledge.retrieval import (
    DataCredit,
    RetrievedPassage,
    SubModelScore,
    credit_data_contributors,
    data_share_msat,
)
from owm_core.knowledge.submodels import SubModel, SubModelKind


def _body(**changes: object) -> dict[str, object]:
    body: dict[str, object] = {
        "format": "owm-dataset/1",
        "name": "capitals",
        "sub_models": ["owm-geo"],
        "source": "atlas",
        "licence": "CC0-1.0",
        "documents": [
            {"title": "France", "text": "Paris is the capital of France."},
            {"title": "Japan", "text": "Tokyo is the capital of Japan.", "licence": "CC-BY-4.0"},
        ],
    }
    body.update(changes)
    return body


def _raw(body: object) -> bytes:
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- parsing


def test_a_valid_dataset_parses_with_every_document_resolving_its_source_and_licence() -> None:
    dataset = parse_dataset(_raw(_body()))
    assert dataset.name == "capitals"
    assert dataset.sub_models == ("owm-geo",)
    assert [d.licence for d in dataset.documents] == ["CC0-1.0", "CC-BY-4.0"]
    assert {d.source for d in dataset.documents} == {"atlas"}
    assert dataset.licences == ("CC-BY-4.0", "CC0-1.0")


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (b"\xff\xfe{}", "dataset", "not UTF-8"),
        (b'{"name": ', "dataset", "not JSON"),
        (b"[]", "dataset", "JSON object"),
        (_raw(_body(licens="CC0")), "dataset", "unknown key"),
        (_raw(_body(format="owm-dataset/2")), "format", "owm-dataset/1"),
        (_raw(_body(name="Bad Name")), "name", "does not match"),
        (_raw(_body(sub_models=[])), "sub_models", "1 to 8"),
        (_raw(_body(sub_models=["Geo!"])), "sub_models", "not a sub-model name"),
        (_raw(_body(sub_models="owm-geo")), "sub_models", "list"),
        (_raw(_body(documents=[])), "documents", "non-empty"),
        (_raw(_body(licence=None)), "documents[0].licence", "required"),
        (_raw(_body(source="")), "source", "1 to 300"),
        (_raw(_body(documents=[{"title": "x"}])), "documents[0].text", "required"),
        (_raw(_body(documents=[{"title": "x", "text": "   "}])), "documents[0].text", "blank"),
        (_raw(_body(documents=[{"title": "", "text": "y"}])), "documents[0].title", "length"),
        (_raw(_body(documents=[{"title": "x", "text": 3}])), "documents[0].text", "text"),
        (_raw(_body(documents=[{"title": "x", "text": "y", "body": 1}])), "documents[0]",
         "unknown key"),
        (_raw(_body(documents=["x"])), "documents[0]", "object"),
    ],
)
def test_an_invalid_dataset_is_refused_with_an_error_naming_the_field(
    raw: bytes, field: str, words: str
) -> None:
    with pytest.raises(InvalidValue) as refused:
        parse_dataset(raw)
    assert refused.value.field == field
    assert words in refused.value.reason


def test_a_dataset_over_the_size_limit_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(InvalidValue, match="at most"):
        parse_dataset(b" " * (MAX_DATASET_BYTES + 1))


def test_a_document_over_the_length_limit_is_refused() -> None:
    with pytest.raises(InvalidValue) as refused:
        dataset_from_object(_body(documents=[{"title": "x", "text": "y" * 50_001}]))
    assert refused.value.field == "documents[0].text"


# --------------------------------------------------------------------------- hashing

_texts = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=80).filter(
    lambda t: t.strip() != ""
)
_docs = st.lists(
    st.builds(Document, title=_texts, text=_texts, source=_texts, licence=_texts),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60)
@given(docs=_docs)
def test_the_digest_does_not_depend_on_key_order_or_formatting_of_the_json(
    docs: list[Document],
) -> None:
    body = {
        "documents": [{"licence": d.licence, "text": d.text, "title": d.title, "source": d.source}
                      for d in docs],
        "sub_models": ["owm-geo"],
        "name": "n",
    }
    compact = parse_dataset(json.dumps(body, separators=(",", ":")).encode())
    pretty = parse_dataset(json.dumps(dict(reversed(body.items())), indent=3).encode())
    assert compact.digest == pretty.digest
    assert compact.dataset_id == "ds-" + compact.digest[:24]


@settings(max_examples=60)
@given(docs=_docs, extra=_texts)
def test_changing_any_document_text_changes_the_digest(docs: list[Document], extra: str) -> None:
    dataset = Dataset(name="n", sub_models=("owm-geo",), documents=tuple(docs))
    changed = list(docs)
    changed[0] = Document(docs[0].title, docs[0].text + extra, docs[0].source, docs[0].licence)
    assert Dataset(name="n", sub_models=("owm-geo",), documents=tuple(changed)).digest != (
        dataset.digest
    )


def test_the_digest_is_sha256_of_the_documented_canonical_json() -> None:
    import hashlib

    dataset = parse_dataset(_raw(_body()))
    canonical = json.dumps(
        {
            "format": "owm-dataset/1",
            "name": "capitals",
            "sub_models": ["owm-geo"],
            "description": "",
            "documents": [
                {"title": "France", "text": "Paris is the capital of France.",
                 "source": "atlas", "licence": "CC0-1.0"},
                {"title": "Japan", "text": "Tokyo is the capital of Japan.",
                 "source": "atlas", "licence": "CC-BY-4.0"},
            ],
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    ).encode()
    assert dataset.digest == hashlib.sha256(canonical).hexdigest()


def test_a_record_refuses_an_id_that_is_not_its_digests() -> None:
    record = record_for(parse_dataset(_raw(_body())), "alice", 0, 2, None)
    with pytest.raises(InvalidValue) as refused:
        attrs.evolve(record, dataset_id="ds-" + "0" * 24)
    assert refused.value.field == "dataset_id"


# --------------------------------------------------------------------------- chunking

_prose = st.lists(
    st.one_of(
        st.text(st.sampled_from("abcdefghij"), min_size=1, max_size=30),
        st.sampled_from([".", "!", "?", " ", "\n", "\t", ". ", "  "]),
    ),
    max_size=120,
).map("".join)


@settings(max_examples=150)
@given(text=_prose, limit=st.integers(1, 120))
def test_chunking_keeps_every_character_in_order_and_respects_the_limit(
    text: str, limit: int
) -> None:
    chunks = chunk_text(text, limit)
    assert all(1 <= len(c) <= limit for c in chunks)
    assert all(c == c.strip() for c in chunks)
    assert "".join(chunks).replace(" ", "") == normalise_whitespace(text).replace(" ", "")
    assert chunk_text(text, limit) == chunks


@settings(max_examples=100)
@given(text=_prose)
def test_without_over_long_words_chunks_rejoin_to_the_normalised_text(text: str) -> None:
    chunks = chunk_text(text, 40)
    if all(len(w) <= 40 for w in normalise_whitespace(text).split(" ")):
        assert " ".join(chunks) == normalise_whitespace(text)


def test_chunks_end_at_sentence_boundaries_when_sentences_fit() -> None:
    text = "One two three. Four five six! Seven eight nine? Ten."
    assert chunk_text(text, 30) == ("One two three. Four five six!", "Seven eight nine? Ten.")
    assert chunk_text("short text", PASSAGE_MAX_CHARS) == ("short text",)
    assert chunk_text("   ") == ()


def test_passages_carry_ids_attribution_source_and_licence() -> None:
    dataset = parse_dataset(_raw(_body()))
    passages = passages_of(dataset, "alice", max_chars=20)
    assert [p.passage_id for p in passages][:2] == [
        f"{dataset.dataset_id}:0:0", f"{dataset.dataset_id}:0:1",
    ]
    assert {p.contributor for p in passages} == {"alice"}
    assert {(p.title, p.licence) for p in passages} == {
        ("France", "CC0-1.0"), ("Japan", "CC-BY-4.0"),
    }


# --------------------------------------------------------------------------- sub-models


def test_a_sub_model_keeps_its_datasets_and_hosts_sorted_and_refuses_bad_ids() -> None:
    model = SubModel(
        name="owm-geo", description="Geography of the world.", kind="retrieval-reader",
        version="owm-v0.1.0", created_at=0,
        dataset_ids=["ds-" + "b" * 24, "ds-" + "a" * 24],
    )
    assert model.kind is SubModelKind.RETRIEVAL_READER
    assert model.dataset_ids == ("ds-" + "a" * 24, "ds-" + "b" * 24)
    assert model.with_dataset("ds-" + "a" * 24) is model
    with pytest.raises(InvalidValue) as refused:
        SubModel(name="owm-geo", description="Geography.", kind="oracle",
                 version="owm-v0.1.0", created_at=0)
    assert refused.value.field == "kind"
    with pytest.raises(InvalidValue) as refused:
        SubModel(name="owm-geo", description="Geography.", kind="trained",
                 version="owm-v0.1.0", created_at=0, dataset_ids=("x",))
    assert refused.value.field == "dataset_ids"


def test_a_sub_model_score_is_the_better_of_domain_and_data() -> None:
    assert SubModelScore("owm-geo", 0.2, 0.7).score == 0.7
    with pytest.raises(InvalidValue):
        SubModelScore("owm-geo", 1.5, 0.0)


# --------------------------------------------------------------------------- credits


def _passages(owners: list[tuple[str, int]]) -> list[RetrievedPassage]:
    """One passage per (contributor, dataset number) entry, all distinct."""
    dataset = parse_dataset(_raw(_body()))
    template = passages_of(dataset, "x")[0]
    return [
        RetrievedPassage(
            attrs.evolve(
                template, passage_id=f"p{i}", dataset_id="ds-" + f"{d:024x}", contributor=c
            ),
            0.5,
        )
        for i, (c, d) in enumerate(owners)
    ]


_owners = st.lists(st.tuples(st.sampled_from(["alice", "bob", "carol"]), st.integers(0, 3)),
                   max_size=12)


@settings(max_examples=200)
@given(owners=_owners, cost=st.integers(0, 10**12), ppm=st.integers(0, 1_000_000))
def test_credits_sum_exactly_to_the_data_share_of_the_cost(
    owners: list[tuple[str, int]], cost: int, ppm: int
) -> None:
    credits = credit_data_contributors(_passages(owners), cost, ppm)
    if not owners:
        assert credits == ()
        return
    assert sum(c.amount_msat for c in credits) == data_share_msat(cost, ppm) == cost * ppm // 10**6
    assert all(isinstance(c.amount_msat, int) and c.amount_msat >= 0 for c in credits)
    assert sum(c.passages_used for c in credits) == len(owners)
    keys = [(c.contributor, c.dataset_id) for c in credits]
    assert keys == sorted(set(keys))


@settings(max_examples=100)
@given(owners=_owners, cost=st.integers(0, 10**9))
def test_a_pair_with_more_passages_never_gets_less(
    owners: list[tuple[str, int]], cost: int
) -> None:
    credits = credit_data_contributors(_passages(owners), cost, 500_000)
    for a in credits:
        for b in credits:
            if a.passages_used > b.passages_used:
                assert a.amount_msat >= b.amount_msat


def test_a_passage_used_twice_is_credited_once() -> None:
    [p] = _passages([("alice", 1)])
    assert credit_data_contributors([p, p, p.passage], 1_000, 1_000_000) == (
        DataCredit("alice", p.passage.dataset_id, 1_000, 1),
    )


def test_money_must_be_integer_msat() -> None:
    with pytest.raises(InvalidValue):
        credit_data_contributors([], 10.5, 1000)  # type: ignore[arg-type]
    with pytest.raises(InvalidValue):
        data_share_msat(10, 1_000_001)
