"""A sub-model's reader: the frozen MiniLM, its own LoRA adapter and its span and rerank heads.

:class:`ReaderModel` is what a node runs to answer from its sub-model's weights and what an FL
round trains (SRS 2.1, SRS-COORD-03): ``genesis`` (deterministic per sub-model name),
``parameters()`` / ``set_parameters()`` in :func:`~owm_adapters.models.reader.layout.layout`
order, ``fit`` / ``evaluate`` on training pairs (:mod:`owm_core.knowledge.training_pairs`) and
``read`` (question + passages → ranked answer spans). A version's bytes are
:mod:`owm_adapters.models.reader.version`.

**Genesis.** The LoRA ``B`` matrices are zero (so the genesis encoder *is* MiniLM, as LoRA
prescribes), the ``A`` matrices and the head weights are drawn from a normal distribution
scaled by ``1/sqrt(fan_in)`` with numpy's PCG64 seeded by the first 8 bytes of
SHA-256(sub-model name), biases are zero: the same arrays on every machine.

The encoder always runs in eval mode (no dropout), so training is deterministic given the
pairs, the seed and the starting arrays (up to floating-point summation order of the CPU's
kernels). A model is thread-safe: a lock serialises its forward passes.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from owm_adapters.models.reader import encoder as minilm
from owm_adapters.models.reader import training
from owm_adapters.models.reader.layout import (
    DEFAULT_CONFIG,
    HEADS,
    ReaderConfig,
    layout,
    lora_name,
)
from owm_adapters.models.reader.spans import Span
from owm_core.knowledge.training_pairs import TrainingPair


def genesis_arrays(sub_model: str, config: ReaderConfig = DEFAULT_CONFIG) -> list[np.ndarray]:
    """The deterministic starting arrays of ``sub_model`` (module docstring)."""
    seed = int.from_bytes(hashlib.sha256(sub_model.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    for name, shape in layout(config):
        if name.endswith(".B") or name.endswith(".bias"):
            out.append(np.zeros(shape, dtype=np.float32))
        else:
            out.append((rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32))
    return out


def _build_network(config: ReaderConfig) -> tuple[Any, Any, Any]:
    """``(tokenizer, peft encoder, heads)``: a private copy of the encoder with the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model

    tokenizer, base = minilm.base_encoder()
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        target_modules=list(config.targets),
        layers_to_transform=list(config.layers),
        lora_dropout=0.0,
        bias="none",
    )
    with warnings.catch_warnings():  # a transformers deprecation peft still triggers
        warnings.simplefilter("ignore", FutureWarning)
        encoder = get_peft_model(copy.deepcopy(base), lora)
    encoder.eval()
    heads = torch.nn.ModuleDict(
        {"span": torch.nn.Linear(minilm.HIDDEN, 2), "rerank": torch.nn.Linear(minilm.HIDDEN, 1)}
    )
    return tokenizer, encoder, heads


DEFAULT_SENTENCES = 1
"""How many BM25-ranked sentences the reader considers for an answer (module docstring)."""


class ReaderModel:
    """One sub-model's reader (module docstring)."""

    def __init__(
        self,
        sub_model: str,
        arrays: Sequence[Any] | None = None,
        config: ReaderConfig = DEFAULT_CONFIG,
        *,
        int8: bool = False,
    ) -> None:
        self.sub_model = sub_model
        self.config = config
        self.int8 = False
        self._lock = threading.Lock()
        self._tokenizer, self._encoder, self._heads = _build_network(config)
        self._tensors = self._trainable()
        self.set_parameters(arrays if arrays is not None else genesis_arrays(sub_model, config))
        if int8:
            self.quantize()

    @classmethod
    def genesis(cls, sub_model: str, config: ReaderConfig = DEFAULT_CONFIG) -> ReaderModel:
        """The untrained reader of ``sub_model`` (the same on every machine)."""
        return cls(sub_model, None, config)

    def _trainable(self) -> list[Any]:
        """The live tensors behind :func:`layout`, in its order."""
        params = dict(self._encoder.named_parameters())
        out = []
        for layer in self.config.layers:
            for target in self.config.targets:
                prefix = f"base_model.model.encoder.layer.{layer}.attention.self.{target}"
                out.append(params[f"{prefix}.lora_A.default.weight"])
                out.append(params[f"{prefix}.lora_B.default.weight"])
        heads = dict(self._heads.named_parameters())
        out.extend(heads[name.removeprefix("heads.")] for name, _ in HEADS)
        for tensor in out:
            tensor.requires_grad_(True)
        return out

    def layout(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Names and shapes of :meth:`parameters`."""
        return layout(self.config)

    def parameters(self) -> list[npt.NDArray[np.float32]]:
        """Copies of the trainable arrays in layout order (LoRA matrices, then heads)."""
        with self._lock:
            return [t.detach().cpu().numpy().astype(np.float32, copy=True) for t in self._tensors]

    def set_parameters(self, arrays: Sequence[Any]) -> None:
        """Replace the trainable arrays; ValueError on a wrong count, shape or a non-finite
        value."""
        import torch

        expected = self.layout()
        if len(arrays) != len(expected):
            raise ValueError(f"expected {len(expected)} arrays, got {len(arrays)}")
        values = []
        for (name, shape), array in zip(expected, arrays, strict=True):
            value = np.asarray(array, dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} holds a non-finite value")
            values.append(value)
        with self._lock, torch.no_grad():
            for tensor, value in zip(self._tensors, values, strict=True):
                tensor.copy_(torch.from_numpy(value.copy()))

    def quantize(self) -> None:
        """Run the frozen encoder in int8 from now on (tier-1 nodes; inference only)."""
        with self._lock:
            if not self.int8:
                self._encoder = minilm.quantize_int8(self._encoder)
                self.int8 = True

    # -- forward -------------------------------------------------------------------------------

    def encode(self, questions: Sequence[str], passages: Sequence[str]) -> Any:
        """The tokenizer's batch for (question, passage) pairs, offsets included."""
        return self._tokenizer(
            list(questions),
            list(passages),
            truncation="only_second",
            max_length=self.config.max_length,
            padding="longest",
            return_offsets_mapping=True,
            return_tensors="pt",
        )

    def trunk(self, batch: Any) -> Any:
        """Hidden states entering the first adapted layer: the frozen part of the encoder
        (embeddings and the layers below ``config.layers``), computed without gradients, so
        training can compute them once per pair and reuse them every epoch."""
        import torch

        bert = self._encoder.base_model.model
        with torch.no_grad():
            hidden = bert.embeddings(
                input_ids=batch["input_ids"], token_type_ids=batch["token_type_ids"]
            )
            mask = _additive_mask(batch["attention_mask"], hidden.dtype)
            for layer in bert.encoder.layer[: self.config.layers[0]]:
                hidden = layer(hidden, mask)
        return hidden

    def top(self, hidden: Any, batch: Any) -> tuple[Any, Any, Any]:
        """``(start_logits, end_logits, rerank_logits)`` from the trunk's hidden states: the
        adapted layers, then the heads. Positions outside the passage (the question,
        separators, padding) get -1e4 except ``[CLS]``, the "no answer" position."""
        import torch

        bert = self._encoder.base_model.model
        mask = _additive_mask(batch["attention_mask"], hidden.dtype)
        for layer in bert.encoder.layer[self.config.layers[0] :]:
            hidden = layer(hidden, mask)
        logits = self._heads["span"](hidden)
        allowed = (
            (batch["token_type_ids"] == 1)
            & (batch["attention_mask"] == 1)
            & (batch["input_ids"] != self._tokenizer.sep_token_id)
        )
        allowed[:, 0] = True
        fill = torch.tensor(-1e4, dtype=logits.dtype)
        start = torch.where(allowed, logits[..., 0], fill)
        end = torch.where(allowed, logits[..., 1], fill)
        rerank = self._heads["rerank"](hidden[:, 0]).squeeze(-1)
        return start, end, rerank

    def forward(self, batch: Any) -> tuple[Any, Any, Any]:
        """:meth:`top` of :meth:`trunk`: the whole reader on a tokenized batch."""
        return self.top(self.trunk(batch), batch)

    # -- training and reading ------------------------------------------------------------------

    def fit(
        self,
        data: Sequence[TrainingPair],
        *,
        epochs: int = 1,
        lr: float = 2e-3,
        batch_size: int = 16,
        seed: int = 0,
    ) -> tuple[int, float]:
        """Train the adapter and heads on ``data``: ``(pairs per epoch, last epoch's mean
        loss)`` (:func:`owm_adapters.models.reader.training.fit`)."""
        if self.int8:
            raise ValueError("an int8 reader is not trained; train a float32 copy")
        with self._lock:
            return training.fit(self, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)

    def evaluate(self, data: Sequence[TrainingPair]) -> tuple[float, float]:
        """``(accuracy, mean loss)`` on ``data``: a pair counts as right when the best span is
        exactly its answer, or when an unanswerable pair is ranked as not answering."""
        with self._lock:
            return training.evaluate(self, data)

    def read(
        self,
        question: str,
        passages: Sequence[tuple[str, str]],
        top_k: int = 3,
        *,
        sentences: int | None = DEFAULT_SENTENCES,
    ) -> list[Span]:
        """The best answer span of each ``(passage_id, text)``, best ``score`` first, at most
        ``top_k``. With ``sentences`` (the default), spans are looked for only in the
        ``sentences`` sentences that BM25 ranks best for the question
        (:func:`owm_adapters.models.reader.regions.bm25_regions`): the transformer reranks
        those candidates and extracts the span, and only the passages that hold one are
        encoded; None reads whole passages."""
        from owm_adapters.models.reader.regions import bm25_regions

        if not passages:
            return []
        if not sentences:
            with self._lock:
                return training.read(self, question, passages)[:top_k]
        regions = bm25_regions(question, passages, sentences)
        kept = [row for row, found in enumerate(regions) if found]  # others cannot answer
        if not kept:
            return []
        with self._lock:
            return training.read(
                self, question, [passages[r] for r in kept], [regions[r] for r in kept]
            )[:top_k]

    def trainable_tensors(self) -> list[Any]:
        """The live trainable tensors (for the training loop; not a copy)."""
        return self._tensors


def _additive_mask(attention_mask: Any, dtype: Any) -> Any:
    """The (batch, 1, 1, tokens) additive attention mask BERT's layers take (padding: -inf)."""
    import torch

    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


__all__ = ["ReaderModel", "Span", "genesis_arrays", "lora_name"]
