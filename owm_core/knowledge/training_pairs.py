"""Training pairs for the sub-models' readers: how contributed documents become (question,
passage, answer span) examples (SRS 2.1, SRS 2.2, SRS-COORD-03).

A sub-model's reader (``owm_adapters.models.reader``) learns two things from a pair: whether the
passage answers the question (reranking) and which characters of the passage are the answer
(extractive span). Pairs come from two places:

* **Contributor-supplied** (:func:`pair_from_fields`): a data contributor may send explicit
  ``{"question", "passage", "answer"}`` objects; the answer must occur in the passage (its first
  occurrence is the span), an empty answer marks a passage that does *not* answer.
* **Self-supervised cloze pairs** (:func:`cloze_pairs`) from any contributed document, with no
  labelling at all. Each document's text is split into sentences
  (:func:`owm_core.knowledge.reader.sentences`); in each sentence the *answer candidates* are

  1. numbers (``1789``, ``8,849``, ``3.5``), with a following unit or scale word
     (``8,849 metres``, ``1.4 billion``);
  2. runs of capitalised words, which may contain ``of``/``the``/``de`` between capitalised
     words (``Gulf of Mexico``, ``Genghis Khan``), except a sentence's first word when it is a
     common word (``The``, ``In``, ...);
  3. terms: the last :data:`MAX_TERMS` lower-case words of at least 6 letters in the sentence
     that are not a verb or adverb form (``-ing``, ``-ed``, ``-ly``) nor a common word
     (``chlorophyll``, ``mitochondria``), so that unnamed things are answers too.

  Each candidate becomes one pair: the question is the sentence with the candidate replaced by
  a wh-word (``when`` for a year, ``how many`` for another number, ``what`` otherwise), the
  final full stop replaced by ``?``; the passage is the whole document (so the reader must find
  the sentence *and* the span); the answer is the candidate where it occurs in the document.
  ``Paris is the capital of France.`` gives ``What is the capital of France?`` → ``Paris`` and
  ``Paris is the capital of what?`` → ``France``. For every answerable pair,
  ``negatives`` pairs ask the same question of other documents of the same set (chosen by a
  seeded, deterministic shuffle), with no answer, so the reranker learns to say no.

**Held-out questions stay out of training.** ``exclude`` lists reference answers of an
evaluation set (the held-out questions of ``bench/query_quality.py``): every sentence that
contains one of them (word-boundary match after :func:`owm_core.knowledge.reader.normalise`) is
skipped as a source of pairs, so a held-out answer is never a training target and no training
question is built from the sentence that answers a held-out question. The documents themselves
still appear as passages (the reader must read them at query time anyway).

Pure and deterministic: the same documents, exclusions and seed give the same pairs in the same
order on every machine.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.knowledge.reader import normalise, sentences

MAX_QUESTION_CHARS = 1_000
MAX_PASSAGE_CHARS = 4_000
MAX_ANSWER_CHARS = 200
DEFAULT_NEGATIVES = 1
MAX_TERMS = 2

_UNITS = (
    "metres|meters|kilometres|kilometers|km|miles|years|year|days|hours|million|billion|"
    "trillion|per cent|percent|degrees|°C|kilograms|tonnes|people|species|bones|planets|"
    "continents|moons"
)
_NUMBER = re.compile(rf"\b\d[\d,]*(?:\.\d+)?(?:\s+(?:{_UNITS})\b)?")
_YEAR = re.compile(r"^(1\d{3}|20\d{2}|[1-9]\d{0,2})$")
_NAME = re.compile(
    r"\b[A-Z][\w'’-]*(?:\s+(?:(?:of|the|de|da|von|van)\s+)?[A-Z][\w'’-]*)*"
)
_TERM = re.compile(r"(?<![\w-])[a-z]{6,}(?![\w-])")
_COMMON_TERMS = frozenset(
    """across almost always another around because before behind believed between beyond
    called camera caused common country during either enough except first follow formed
    further global however include including itself larger largest little longer longest
    mainly making mostly nearly number others people period places rather second should
    showed similar single smaller smallest something sometimes strongly through towards
    usually various whether within without""".split()  # noqa: SIM905
)
_COMMON_FIRST = frozenset(
    """a an and as at by during for from he her his how in it its many most much of on one
    one's only our she some that the their then there these they this those to today under
    until what when where which while who with""".split()  # noqa: SIM905
)


@attrs.frozen
class TrainingPair:
    """One example: does ``passage`` answer ``question``, and with which characters?

    ``answer_start`` is the character offset of ``answer`` in ``passage``; ``-1`` with an empty
    ``answer`` means the passage does not answer the question.
    """

    question: str = attrs.field(validator=fields.text(max_len=MAX_QUESTION_CHARS))
    passage: str = attrs.field(validator=fields.text(max_len=MAX_PASSAGE_CHARS))
    answer: str = attrs.field(
        default="", validator=fields.text(min_len=0, max_len=MAX_ANSWER_CHARS)
    )
    answer_start: int = attrs.field(default=-1)

    def __attrs_post_init__(self) -> None:
        if not self.answer:
            if self.answer_start != -1:
                raise InvalidValue("answer_start", "must be -1 when there is no answer")
            return
        start = self.answer_start
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise InvalidValue("answer_start", f"must be an offset ≥ 0, got {start!r}")
        if self.passage[start : start + len(self.answer)] != self.answer:
            raise InvalidValue("answer", "must occur in the passage at answer_start")

    @property
    def answerable(self) -> bool:
        """Whether the passage answers the question."""
        return bool(self.answer)


def pair_fields(pair: TrainingPair) -> dict[str, Any]:
    """A pair as a JSON object (task inputs, contributed pair files)."""
    return {
        "question": pair.question,
        "passage": pair.passage,
        "answer": pair.answer,
        "answer_start": pair.answer_start,
    }


def pair_from_fields(data: Mapping[str, Any]) -> TrainingPair:
    """A pair from its JSON object; ``answer_start`` may be left out (first occurrence).

    InvalidValue when a field is missing or the answer does not occur in the passage.
    """
    try:
        question, passage = str(data["question"]), str(data["passage"])
        answer = str(data.get("answer") or "")
    except (KeyError, TypeError) as exc:
        raise InvalidValue("pair", f"needs question and passage: {exc}") from None
    if not answer:
        return TrainingPair(question, passage)
    given = data.get("answer_start")
    start = passage.find(answer) if given is None else given
    if not isinstance(start, int) or start < 0:
        raise InvalidValue("answer", "does not occur in the passage")
    return TrainingPair(question, passage, answer, start)


def answer_candidates(sentence: str) -> list[tuple[int, str]]:
    """The cloze answer candidates of ``sentence`` as ``(offset, text)``, in order (module
    docstring): numbers with their unit, then capitalised names."""
    found: list[tuple[int, str]] = []
    taken: list[tuple[int, int]] = []
    for match in _NUMBER.finditer(sentence):
        text = match.group(0).rstrip(",.")
        found.append((match.start(), text))
        taken.append((match.start(), match.start() + len(text)))
    for match in _NAME.finditer(sentence):
        start, text = match.start(), match.group(0)
        first, _, rest = text.partition(" ")
        if start == 0 and first.casefold() in _COMMON_FIRST:
            if not rest or not rest[0].isupper():
                continue
            start, text = start + len(first) + 1, rest
        end = start + len(text)
        if any(a < end and start < b for a, b in taken):
            continue
        found.append((start, text))
        taken.append((start, end))
    terms = [
        m for m in _TERM.finditer(sentence)
        if m.group(0) not in _COMMON_TERMS and not m.group(0).endswith(("ing", "ed", "ly"))
    ]
    for match in terms[-MAX_TERMS:]:
        if not any(a < match.end() and match.start() < b for a, b in taken):
            found.append((match.start(), match.group(0)))
    found.sort()
    return found


def _wh_word(answer: str) -> str:
    head = answer.split()[0].replace(",", "")
    if _YEAR.match(head) and len(head) == 4 and answer == head:
        return "when"
    if head[0].isdigit():
        return "how many"
    return "what"


def cloze_question(sentence: str, offset: int, answer: str) -> str:
    """``sentence`` with ``answer`` (at ``offset``) replaced by its wh-word, as a question."""
    wh = _wh_word(answer)
    before, after = sentence[:offset], sentence[offset + len(answer) :]
    if not before:
        wh = wh.capitalize()
    text = f"{before}{wh}{after}".strip()
    text = text[:-1] if text.endswith((".", "!", "?")) else text
    return text + "?"


_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> str:
    return " ".join(_WORD.findall(normalise(text)))


def _excluded(sentence: str, exclude: Sequence[str]) -> bool:
    flat = f" {_words(sentence)} "
    return any(f" {word} " in flat for word in exclude)


def _order_key(seed: int, *parts: object) -> bytes:
    return hashlib.sha256(repr((seed, *parts)).encode("utf-8")).digest()


def cloze_pairs(
    documents: Sequence[str],
    *,
    exclude: Iterable[str] = (),
    negatives: int = DEFAULT_NEGATIVES,
    seed: int = 0,
) -> list[TrainingPair]:
    """Self-supervised pairs from ``documents`` (texts), held-out answers ``exclude``d (module
    docstring). Documents longer than :data:`MAX_PASSAGE_CHARS` are cut to it."""
    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 0:
        raise InvalidValue("negatives", f"must be an integer ≥ 0, got {negatives!r}")
    held_out = [w for w in (_words(a) for a in exclude) if w]
    texts = [" ".join(d.split())[:MAX_PASSAGE_CHARS] for d in documents]
    out: list[TrainingPair] = []
    for index, text in enumerate(texts):
        cursor = 0
        for sentence in sentences(text):
            at = text.find(sentence, cursor)
            if at < 0:  # a sentence cut by the reader's length limit: no pairs from it
                continue
            cursor = at + len(sentence)
            if _excluded(sentence, held_out):
                continue
            for offset, answer in answer_candidates(sentence):
                if len(answer) > MAX_ANSWER_CHARS:
                    continue
                question = cloze_question(sentence, offset, answer)
                out.append(TrainingPair(question, text, answer, at + offset))
                others = sorted(
                    (i for i in range(len(texts)) if i != index and answer not in texts[i]),
                    key=lambda i: _order_key(seed, question, i),
                )
                out.extend(TrainingPair(question, texts[i]) for i in others[:negatives])
    return out


__all__ = [
    "DEFAULT_NEGATIVES",
    "TrainingPair",
    "answer_candidates",
    "cloze_pairs",
    "cloze_question",
    "pair_fields",
    "pair_from_fields",
]
