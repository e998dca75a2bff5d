"""What a reader version is made of: its configuration and the names and shapes of its trainable
arrays, known without loading the encoder (SRS-COORD-03, SRS-NODE-10).

A sub-model's reader is the frozen MiniLM encoder plus a LoRA adapter (rank ``rank`` matrices
``A`` (rank × 384) and ``B`` (384 × rank) on the ``targets`` projections of the self-attention of
encoder layers ``layers``) plus two heads on the encoder's last hidden states: ``span``
(384 → 2: start and end logits per token) and ``rerank`` (384 → 1 on the ``[CLS]`` token: does
this passage answer the question). Only these arrays are trained, aggregated, stamped and
downloaded; :func:`layout` is their fixed order, which is also the order of the flat float32
vector of FL task inputs and uploads (``owm_core.fl.updates``).
"""

from __future__ import annotations

import attrs

from owm_adapters.models.reader.encoder import HIDDEN, LAYERS

ARCHITECTURE = "minilm-lora"
_TARGETS = ("query", "key", "value")


def _check_layers(_instance: object, _attribute: object, value: tuple[int, ...]) -> None:
    if not value or list(value) != sorted(set(value)) or not all(0 <= x < LAYERS for x in value):
        raise ValueError(f"layers must be distinct increasing indices below {LAYERS}")


def _check_targets(_instance: object, _attribute: object, value: tuple[str, ...]) -> None:
    if not value or [t for t in _TARGETS if t in value] != list(value):
        raise ValueError(f"targets must be a subset of {_TARGETS}, in that order")


@attrs.frozen
class ReaderConfig:
    """The shape of a reader's adapter and how much text it reads (defaults keep one local
    training step of 16 pairs well under a second on two CPU cores)."""

    rank: int = attrs.field(default=8, validator=attrs.validators.in_(range(1, 65)))
    alpha: int = attrs.field(default=16, validator=attrs.validators.in_(range(1, 257)))
    layers: tuple[int, ...] = attrs.field(default=(4, 5), converter=tuple, validator=_check_layers)
    targets: tuple[str, ...] = attrs.field(
        default=("query", "value"), converter=tuple, validator=_check_targets
    )
    max_length: int = attrs.field(default=160, validator=attrs.validators.in_(range(32, 513)))
    max_answer_tokens: int = attrs.field(default=16, validator=attrs.validators.in_(range(1, 65)))

    def fields(self) -> dict[str, object]:
        """The configuration as a JSON object (a version's header)."""
        return {
            "rank": self.rank,
            "alpha": self.alpha,
            "layers": list(self.layers),
            "targets": list(self.targets),
            "max_length": self.max_length,
            "max_answer_tokens": self.max_answer_tokens,
        }


DEFAULT_CONFIG = ReaderConfig()
HEADS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("heads.span.weight", (2, HIDDEN)),
    ("heads.span.bias", (2,)),
    ("heads.rerank.weight", (1, HIDDEN)),
    ("heads.rerank.bias", (1,)),
)


def lora_name(layer: int, target: str, matrix: str) -> str:
    """The name of one LoRA matrix (``matrix`` is ``A`` or ``B``) in a version."""
    return f"lora.layer{layer}.{target}.{matrix}"


def layout(config: ReaderConfig = DEFAULT_CONFIG) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Every trainable array's name and shape, in the fixed order of ``parameters()``."""
    out: list[tuple[str, tuple[int, ...]]] = []
    for layer in config.layers:
        for target in config.targets:
            out.append((lora_name(layer, target, "A"), (config.rank, HIDDEN)))
            out.append((lora_name(layer, target, "B"), (HIDDEN, config.rank)))
    return (*out, *HEADS)


def parameter_count(config: ReaderConfig = DEFAULT_CONFIG) -> int:
    """How many float32 values a version of this configuration holds."""
    total = 0
    for _, shape in layout(config):
        size = 1
        for dim in shape:
            size *= dim
        total += size
    return total
