"""How the router's confidence is calibrated: labelled demo questions and the measurement.

``python -m owm_adapters.services.query_calibration`` loads the demo knowledge base with the real
MiniLM
encoder, runs every question of :data:`QUESTIONS` through retrieval, routing, the nodes' reader
(:func:`owm_core.knowledge.reader.read_passages`, called directly: the market adds nothing to what
is
read) and :func:`owm_core.knowledge.routing.compose` with the identity calibration, and prints, per
question, the best sentence's evidence strength and whether the answer was *supported* — an
answerable question whose first quoted sentence contains the expected fact. Unanswerable
questions (topics outside the data, and in-domain facts the data does not hold) are never
supported. :func:`owm_core.knowledge.routing.fit_calibration` turns the pairs into the table that
:data:`owm_core.knowledge.routing.CALIBRATION` holds and docs/conglomerate.md shows.
"""

from __future__ import annotations

import attrs

from owm_adapters.services.queries import KnowledgeSource, QueryConfig
from owm_core.knowledge.reader import read_passages
from owm_core.knowledge.routing import (
    Calibration,
    Evidence,
    Reading,
    SubModelRoute,
    compose,
    reading_from_output,
    route,
)
from owm_core.market.task_types import canonical_output

IDENTITY = Calibration(((0.0, 0.0), (1.0, 1.0)))

#: (question, a fact the supporting sentence must contain); None: the data cannot answer it.
QUESTIONS: tuple[tuple[str, str | None], ...] = (
    ("What is the capital of France?", "Paris"),
    ("Which city is the capital of Japan?", "Tokyo"),
    ("What is the capital of Canada?", "Ottawa"),
    ("What is the capital city of Australia?", "Canberra"),
    ("What is the largest city in Brazil?", "São Paulo"),
    ("How high is Mount Everest?", "8,849"),
    ("Which is the largest ocean?", "Pacific"),
    ("What is the largest hot desert in the world?", "Sahara"),
    ("What is the largest lake in the world by area?", "Caspian"),
    ("How many continents are there?", "seven"),
    ("Which is the smallest country in the world?", "Vatican"),
    ("What is the highest mountain in the Alps?", "Mont Blanc"),
    ("When did the Western Roman Empire fall?", "476"),
    ("When did Constantinople fall to the Ottomans?", "1453"),
    ("Who was the first person to walk on the Moon?", "Armstrong"),
    ("When did the French Revolution begin?", "1789"),
    ("When was the Battle of Hastings?", "1066"),
    ("When did the First World War start and end?", "1914"),
    ("Who introduced the printing press in Europe?", "Gutenberg"),
    ("When was the Berlin Wall opened?", "1989"),
    ("Who founded the Mongol Empire?", "Genghis Khan"),
    ("When was Magna Carta agreed?", "1215"),
    ("When did India gain independence?", "1947"),
    ("Who made the first powered aeroplane flight?", "Wright"),
    ("What is photosynthesis?", "sunlight"),
    ("How fast does light travel?", "299,792,458"),
    ("Why is the sky blue?", "scatter"),
    ("How many chambers does the human heart have?", "four"),
    ("At what temperature does water boil?", "100"),
    ("What is DNA?", "genetic"),
    ("How many planets are in the Solar System?", "eight"),
    ("What causes the seasons?", "tilt"),
    ("How far away is the Moon?", "384,000"),
    ("What is absolute zero?", "273.15"),
    ("Who proposed the theory of natural selection?", "Darwin"),
    ("What does a vaccine do?", "immune"),
    # unanswerable: outside every sub-model's data
    ("Who won the 2031 football world cup?", None),
    ("What is the best pizza recipe?", None),
    ("How do I reset my router password?", None),
    ("What will the Bitcoin price be next year?", None),
    ("Which smartphone has the best camera?", None),
    ("What is the plot of the latest Star Wars film?", None),
    ("How many goals did Pelé score in his career?", None),
    ("What is the recommended dose of ibuprofen for a child?", None),
    ("Who is the current prime minister of Italy?", None),
    ("How do I write a for loop in Rust?", None),
    ("What time does the supermarket close today?", None),
    ("Which team won the NBA championship in 2019?", None),
    # unanswerable although in-domain: the data does not hold the fact
    ("What is the capital of Mongolia?", None),
    ("How deep is Lake Baikal?", None),
    ("Who was the first emperor of Brazil?", None),
    ("When was the Eiffel Tower built?", None),
    ("What is the boiling point of ethanol?", None),
    ("How many bones are in the human hand?", None),
    ("What is the population of Iceland?", None),
    ("Who invented the telephone?", None),
    ("What is the half-life of carbon-14?", None),
    ("When did the Byzantine emperor Justinian die?", None),
    ("What is the tallest building in Dubai?", None),
    ("Who discovered penicillin?", None),
)


@attrs.frozen
class Sample:
    """One labelled question: what routing and reading made of it."""

    question: str
    expected: str | None
    top_relevance: float
    chosen: tuple[str, ...]
    strength: float
    supported: bool
    first_sentence: str


def measure(
    knowledge: KnowledgeSource, question: str, expected: str | None, config: QueryConfig
) -> Sample:
    """Route and read ``question`` as the query path does, and judge the result."""
    retrieval = knowledge.search(question, config.passages_per_sub_model * config.max_sub_models)
    candidates = [
        SubModelRoute(s.sub_model, min(1.0, max(-1.0, s.score))) for s in retrieval.scores
    ]
    chosen = route(candidates, config.threshold, config.max_sub_models, config.margin)
    evidence: list[Evidence] = []
    readings: list[Reading] = []
    for r in chosen:
        found = retrieval.passages_for([r.sub_model])[: config.passages_per_sub_model]
        if not found:
            found = knowledge.search(question, config.passages_per_sub_model, [r.sub_model])\
                .passages_for([r.sub_model])
        if not found:
            continue
        evidence.extend(
            Evidence(p.passage.passage_id, r.sub_model, p.passage.source, p.passage.text, p.score)
            for p in found
        )
        output = read_passages(
            question, [{"id": p.passage.passage_id, "text": p.passage.text} for p in found],
            config.reader_top_k,
        )
        reading = reading_from_output(
            r.sub_model, canonical_output({"sub_model": r.sub_model, **output})
        )
        readings.append(reading)
    result = compose(chosen, evidence, readings, calibration=IDENTITY, abstain_below=0.0)
    first = result.citations[0].text if result.citations else ""
    supported = expected is not None and expected.casefold() in first.casefold()
    top = max((c.relevance for c in candidates), default=-1.0)
    return Sample(question, expected, top, tuple(r.sub_model for r in chosen),
                  result.confidence, supported, first)


def measure_all(knowledge: KnowledgeSource, config: QueryConfig | None = None) -> list[Sample]:
    """:func:`measure` for every labelled question."""
    config = config or QueryConfig()
    return [measure(knowledge, q, e, config) for q, e in QUESTIONS]
