"""Answer quality of the sub-models' readers on held-out questions, against the BM25 baseline.

Usage:  .venv/bin/python bench/query_quality.py [--epochs 6] [--lr 3e-3] [--seed 0]
        [--limit N] [--threads N] [--save DIR | --load DIR]

What runs, in one process:

1. **Retrieval** as the query path does it: the demo knowledge base (three sub-models, their CC0
   datasets) with the real MiniLM encoder; each held-out question
   (``owm_adapters/models/reader/heldout.json``, written for this benchmark) is routed
   (:func:`owm_core.knowledge.routing.route`, default thresholds) and every chosen sub-model gets
   its closest passages (at most 6, like ``QueryConfig.passages_per_sub_model``).
2. **Training** of each demo sub-model's reader, in-process, with the function FL rounds use
   (``ReaderModel.fit``), from genesis on the self-supervised cloze pairs of its dataset
   (:func:`owm_core.knowledge.training_pairs.cloze_pairs`), every sentence holding a held-out
   answer excluded.
3. **Answers** to every question from: the BM25 reader (:func:`owm_core.knowledge.reader.
   read_passages`, its best sentence: the baseline), the untrained (genesis) readers, the trained
   readers, and the trained readers with the int8 encoder of tier-1 nodes. A reader's answer is
   the best-scoring span over the chosen sub-models' passages, looked for in the sentence BM25
   ranks best in each sub-model's passages (``--sentences``; ``ReaderModel.read``).
   ``--save DIR`` writes the trained versions (``<sub_model>.owmr``, ready to install in a
   coordinator's ``<data_dir>/readers``); ``--load DIR`` scores such versions without training.
4. **Scores**: exact match and token F1 (:mod:`owm_core.knowledge.answer_quality`), in percent.

The last line is machine-readable:
``questions=<n> em=<x> f1=<x> baseline_em=<x> baseline_f1=<x>`` (trained float32 readers vs BM25),
preceded by ``untrained_em/f1`` and ``int8_em/f1`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from owm_adapters.bootstrap.coordinator import demo_knowledge_base
from owm_adapters.knowledge.minilm import MiniLmEmbedder
from owm_adapters.models.reader.heldout import heldout_answers, heldout_questions
from owm_adapters.models.reader.model import DEFAULT_SENTENCES, ReaderModel
from owm_adapters.models.reader.version import parse_version, serialise_version
from owm_core.knowledge.answer_quality import exact_match, f1_score
from owm_core.knowledge.reader import read_passages
from owm_core.knowledge.routing import SubModelRoute, route
from owm_core.knowledge.training_pairs import cloze_pairs

DEMO = Path(__file__).resolve().parents[1] / "owm_adapters" / "knowledge" / "demo_data"
PASSAGES = 6


def retrieve(kb, question: str) -> dict[str, list[tuple[str, str]]]:
    """The routed sub-models' passages for ``question`` (as the query path picks them)."""
    retrieval = kb.search(question, PASSAGES * 3)
    chosen = route(SubModelRoute(s.sub_model, min(1.0, max(-1.0, s.score)))
                   for s in retrieval.scores)
    out = {}
    for r in chosen:
        found = retrieval.passages_for([r.sub_model])[:PASSAGES]
        if not found:
            found = kb.search(question, PASSAGES, [r.sub_model]).passages_for([r.sub_model])
        out[r.sub_model] = [(p.passage.passage_id, p.text) for p in found[:PASSAGES]]
    return out


def bm25_answer(question: str, passages: dict[str, list[tuple[str, str]]]) -> str:
    every = [{"id": pid, "text": text} for found in passages.values() for pid, text in found]
    sentences = read_passages(question, every, 1)["sentences"]
    return sentences[0]["text"] if sentences else ""


def model_answer(readers, question: str, passages, sentences: int) -> str:
    spans = [
        span for name, found in passages.items() if name in readers
        for span in readers[name].read(question, found, 1, sentences=sentences or None)
    ]
    return max(spans, key=lambda s: s.score).text if spans else ""


def documents(sub_model: str) -> list[str]:
    for path in sorted(DEMO.glob("owm-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if sub_model in data["sub_models"]:
            return [d["text"] for d in data["documents"]]
    raise SystemExit(f"no demo dataset for {sub_model}")


def score(name: str, answers: list[str], questions) -> tuple[float, float]:
    em = 100 * sum(exact_match(a, q.answers) for a, q in zip(answers, questions, strict=True))
    f1 = 100 * sum(f1_score(a, q.answers) for a, q in zip(answers, questions, strict=True))
    em, f1 = em / len(questions), f1 / len(questions)
    print(f"{name:10} em={em:.1f} f1={f1:.1f}", flush=True)
    return em, f1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--sentences", type=int, default=DEFAULT_SENTENCES,
                        help="BM25-best sentences a reader may answer from (0: whole passages)")
    parser.add_argument("--save", type=Path, help="write the trained versions here (.owmr)")
    parser.add_argument("--load", type=Path, help="read trained versions from here, no training")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    questions = list(heldout_questions())[: args.limit or None]
    kb = demo_knowledge_base(embedder=MiniLmEmbedder())
    retrieved = [retrieve(kb, q.question) for q in questions]
    names = sorted({q.sub_model for q in heldout_questions()})
    baseline = score("bm25", [bm25_answer(q.question, p) for q, p in zip(questions, retrieved,
                                                                          strict=True)], questions)
    readers = {name: ReaderModel.genesis(name) for name in names}
    untrained = score("untrained", [model_answer(readers, q.question, p, args.sentences)
                                    for q, p in zip(questions, retrieved, strict=True)], questions)
    exclude = heldout_answers()
    for name in names:
        if args.load:
            version = parse_version((args.load / f"{name}.owmr").read_bytes())
            readers[name].set_parameters(version.arrays)
            continue
        pairs = cloze_pairs(documents(name), exclude=exclude, seed=args.seed)
        started = time.monotonic()
        count, loss = readers[name].fit(pairs, epochs=args.epochs, lr=args.lr, batch_size=16,
                                        seed=args.seed)
        print(f"trained {name}: {count} pairs x {args.epochs} epochs, loss {loss:.3f}, "
              f"{time.monotonic() - started:.0f} s", flush=True)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            blob = serialise_version(name, readers[name].config, readers[name].parameters())
            (args.save / f"{name}.owmr").write_bytes(blob)
    trained = score("trained", [model_answer(readers, q.question, p, args.sentences)
                                for q, p in zip(questions, retrieved, strict=True)], questions)
    small = {n: ReaderModel(n, r.parameters(), int8=True) for n, r in readers.items()}
    int8 = score("int8", [model_answer(small, q.question, p, args.sentences)
                          for q, p in zip(questions, retrieved, strict=True)], questions)
    print(f"untrained_em={untrained[0]:.1f} untrained_f1={untrained[1]:.1f}")
    print(f"int8_em={int8[0]:.1f} int8_f1={int8[1]:.1f}")
    print(f"questions={len(questions)} em={trained[0]:.1f} f1={trained[1]:.1f} "
          f"baseline_em={baseline[0]:.1f} baseline_f1={baseline[1]:.1f}")


if __name__ == "__main__":
    main()
