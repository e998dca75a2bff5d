"""The reader's training loop, its evaluation and its span decoding (SRS-COORD-03, SRS 2.1).

* **Loss** of a batch of training pairs: the mean over pairs of the start and end cross-entropy
  (averaged) of the answer's first and last tokens — position 0 (``[CLS]``) for a pair the passage
  does not answer, or whose answer was cut off by ``max_length`` — plus the binary cross-entropy
  of the rerank head against "answers" (1) / "does not answer" (0).
* **Optimiser**: AdamW (no weight decay) on the LoRA matrices and the heads only; pairs are
  shuffled each epoch by numpy's PCG64 seeded with ``seed``.
* **Cost**: the encoder's layers below the first adapted one never change, so :func:`fit` runs
  them once per pair and keeps their output (about 130 kB per pair of 85 tokens); every step
  then runs only the adapted layers and the heads.
* **Decoding** (:func:`read`): per passage, the span ``start ≤ end < start + max_answer_tokens``
  inside the passage maximising ``p_start × p_end`` (softmaxes over the passage's tokens and
  ``[CLS]``), mapped back to the passage's characters through the tokenizer's offsets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import attrs
import numpy as np

from owm_adapters.models.reader.layout import ReaderConfig
from owm_adapters.models.reader.spans import Span
from owm_core.knowledge.training_pairs import TrainingPair

EVAL_BATCH = 32


class ReaderModel(Protocol):
    """What the loops need of :class:`owm_adapters.models.reader.model.ReaderModel`."""

    config: ReaderConfig

    def encode(self, questions: Sequence[str], passages: Sequence[str]) -> Any:
        """The tokenizer's batch for (question, passage) pairs."""
        ...

    def forward(self, batch: Any) -> tuple[Any, Any, Any]:
        """Start, end and rerank logits."""
        ...

    def trunk(self, batch: Any) -> Any:
        """Hidden states entering the first adapted layer (no gradients)."""
        ...

    def top(self, hidden: Any, batch: Any) -> tuple[Any, Any, Any]:
        """Start, end and rerank logits from the trunk's hidden states."""
        ...

    def trainable_tensors(self) -> list[Any]:
        """The live trainable tensors."""
        ...


def answer_positions(batch: Any, pairs: Sequence[TrainingPair]) -> tuple[list[int], list[int]]:
    """Token indices of each pair's answer start and end (0, 0 when there is none in the
    tokenized passage)."""
    starts, ends = [], []
    offsets = batch["offset_mapping"].tolist()
    for row, pair in enumerate(pairs):
        first = last = 0
        if pair.answerable:
            a, b = pair.answer_start, pair.answer_start + len(pair.answer)
            for index, seq in enumerate(batch.sequence_ids(row)):
                if seq != 1:
                    continue
                lo, hi = offsets[row][index]
                if hi <= lo:
                    continue
                if not first and (lo <= a < hi or a < lo < b):
                    first = index
                if first and lo < b:
                    last = index
            if not first or last < first:
                first = last = 0
        starts.append(first)
        ends.append(last)
    return starts, ends


def batch_loss(model: ReaderModel, pairs: Sequence[TrainingPair]) -> tuple[Any, Any]:
    """``(mean loss, (start, end, rerank) logits)`` of ``pairs`` (module docstring)."""
    import torch
    import torch.nn.functional as F

    batch = model.encode([p.question for p in pairs], [p.passage for p in pairs])
    start, end, rerank = model.forward(batch)
    s_pos, e_pos = answer_positions(batch, pairs)
    labels = torch.tensor([1.0 if s else 0.0 for s in s_pos])
    span = (
        F.cross_entropy(start, torch.tensor(s_pos)) + F.cross_entropy(end, torch.tensor(e_pos))
    ) / 2
    loss = span + F.binary_cross_entropy_with_logits(rerank, labels)
    return loss, (start, end, rerank, batch)


@attrs.frozen
class _Cached:
    """One pair's trunk output and what its loss needs (unpadded)."""

    hidden: Any
    input_ids: Any
    token_type_ids: Any
    start: int
    end: int


def _cache(model: ReaderModel, data: Sequence[TrainingPair]) -> list[_Cached]:
    """Every pair's trunk hidden states, computed once (module docstring)."""
    out = []
    for at in range(0, len(data), EVAL_BATCH):
        chunk = list(data[at : at + EVAL_BATCH])
        batch = model.encode([p.question for p in chunk], [p.passage for p in chunk])
        starts, ends = answer_positions(batch, chunk)
        hidden = model.trunk(batch)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for row, length in enumerate(lengths):
            out.append(
                _Cached(
                    hidden[row, :length].clone(),
                    batch["input_ids"][row, :length],
                    batch["token_type_ids"][row, :length],
                    starts[row],
                    ends[row],
                )
            )
    return out


def _cached_loss(model: ReaderModel, items: Sequence[_Cached]) -> Any:
    """The loss of a batch of cached pairs (padded here)."""
    import torch
    import torch.nn.functional as F

    width = max(int(item.hidden.shape[0]) for item in items)
    hidden = torch.zeros(len(items), width, items[0].hidden.shape[1])
    ids = torch.zeros(len(items), width, dtype=torch.long)
    types = torch.zeros(len(items), width, dtype=torch.long)
    attention = torch.zeros(len(items), width, dtype=torch.long)
    for row, item in enumerate(items):
        length = int(item.hidden.shape[0])
        hidden[row, :length] = item.hidden
        ids[row, :length] = item.input_ids
        types[row, :length] = item.token_type_ids
        attention[row, :length] = 1
    batch = {"input_ids": ids, "token_type_ids": types, "attention_mask": attention}
    start, end, rerank = model.top(hidden, batch)
    s_pos = torch.tensor([item.start for item in items])
    e_pos = torch.tensor([item.end for item in items])
    span = (F.cross_entropy(start, s_pos) + F.cross_entropy(end, e_pos)) / 2
    return span + F.binary_cross_entropy_with_logits(rerank, (s_pos > 0).float())


def fit(
    model: ReaderModel,
    data: Sequence[TrainingPair],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> tuple[int, float]:
    """Train ``model`` in place (module docstring); ``(len(data), last epoch's mean loss)``.

    The frozen trunk runs once per pair (:func:`_cache`); each step runs only the adapted
    layers and the heads, forward and backward.
    """
    import torch

    if not data:
        raise ValueError("no training pairs")
    if epochs < 1 or batch_size < 1 or not (lr > 0 and math.isfinite(lr)):
        raise ValueError("epochs and batch_size must be ≥ 1 and lr a positive number")
    cached = _cache(model, data)
    optimiser = torch.optim.AdamW(model.trainable_tensors(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    mean = float("nan")
    for _ in range(epochs):
        order = rng.permutation(len(cached))
        total = 0.0
        for at in range(0, len(cached), batch_size):
            chunk = [cached[int(i)] for i in order[at : at + batch_size]]
            loss = _cached_loss(model, chunk)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(chunk)
        mean = total / len(cached)
    return len(cached), mean


def best_spans(start: Any, end: Any, max_tokens: int) -> tuple[list[int], list[int], list[float]]:
    """Per row, the best ``(start, end)`` token pair outside ``[CLS]`` and its probability."""
    import torch

    p_start, p_end = torch.softmax(start, dim=-1), torch.softmax(end, dim=-1)
    tokens = start.shape[-1]
    joint = p_start[:, :, None] * p_end[:, None, :]
    ones = torch.ones(tokens, tokens, dtype=torch.bool)
    valid = torch.triu(ones) & ~torch.triu(ones, diagonal=max_tokens)
    valid[0, :] = False
    valid[:, 0] = False
    joint = torch.where(valid, joint, torch.zeros((), dtype=joint.dtype))
    flat = joint.reshape(joint.shape[0], -1)
    best = flat.argmax(dim=-1)
    probs = flat.gather(1, best[:, None]).squeeze(1)
    return (best // tokens).tolist(), (best % tokens).tolist(), probs.tolist()


def _restrict(start: Any, end: Any, offsets: list[Any], regions: Sequence[Any]) -> None:
    """Mask (in place) the positions of each row outside its character ``regions`` (None: the
    whole passage); ``[CLS]`` stays."""
    for row, allowed in enumerate(regions):
        if allowed is None:
            continue
        for index, (lo, hi) in enumerate(offsets[row]):
            if index and not any(a <= lo and hi <= b for a, b in allowed):
                start[row, index] = -1e4
                end[row, index] = -1e4


def read(
    model: ReaderModel,
    question: str,
    passages: Sequence[tuple[str, str]],
    regions: Sequence[Sequence[tuple[int, int]] | None] | None = None,
) -> list[Span]:
    """Every passage's best span, best score first (ties: passage order); with ``regions``,
    each passage's span lies inside one of its character ranges."""
    import torch

    texts = [text for _, text in passages]
    batch = model.encode([question] * len(texts), texts)
    offsets = batch["offset_mapping"].tolist()
    with torch.no_grad():
        start, end, rerank = model.forward(batch)
        if regions is not None:
            _restrict(start, end, offsets, regions)
    firsts, lasts, probs = best_spans(start, end, model.config.max_answer_tokens)
    relevance = torch.sigmoid(rerank).tolist()
    spans = []
    for row, (passage_id, text) in enumerate(passages):
        if regions is not None and not regions[row] and regions[row] is not None:
            continue
        lo, hi = offsets[row][firsts[row]][0], offsets[row][lasts[row]][1]
        if hi <= lo:
            continue
        spans.append(
            (row, Span(passage_id, lo, hi, text[lo:hi], float(relevance[row]), float(probs[row])))
        )
    spans.sort(key=lambda item: (-item[1].score, item[0]))
    return [span for _, span in spans]


def evaluate(model: ReaderModel, data: Sequence[TrainingPair]) -> tuple[float, float]:
    """``(accuracy, mean loss)`` (see :meth:`ReaderModel.evaluate`); ``(0.0, inf)`` when the
    loss is not finite, ``(0.0, 0.0)`` for no data."""
    import torch

    if not data:
        return 0.0, 0.0
    right, total = 0, 0.0
    with torch.no_grad():
        for at in range(0, len(data), EVAL_BATCH):
            chunk = list(data[at : at + EVAL_BATCH])
            loss, (start, end, rerank, batch) = batch_loss(model, chunk)
            total += float(loss) * len(chunk)
            firsts, lasts, _ = best_spans(start, end, model.config.max_answer_tokens)
            offsets = batch["offset_mapping"].tolist()
            for row, pair in enumerate(chunk):
                says_yes = float(rerank[row]) > 0
                if not pair.answerable:
                    right += not says_yes
                    continue
                lo, hi = offsets[row][firsts[row]][0], offsets[row][lasts[row]][1]
                right += says_yes and pair.passage[lo:hi] == pair.answer
    mean = total / len(data)
    if not math.isfinite(mean):
        return 0.0, math.inf
    return right / len(data), mean
