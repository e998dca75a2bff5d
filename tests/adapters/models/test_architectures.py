"""Every FL architecture honours the TrainableModel contract the rounds rely on (SRS-COORD-03)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from owm_adapters.knowledge import demo_data
from owm_adapters.models.architectures import (
    MINILM_LORA,
    TINYNET,
    architecture,
    architecture_of,
    flatten,
    from_named,
    named,
    names,
    size,
    unflatten,
)
from owm_adapters.models.reader.layout import ReaderConfig
from owm_adapters.models.reader_rounds import ReaderArchitecture
from owm_core.errors import InvalidValue
from owm_core.knowledge.datasets import parse_dataset
from owm_core.market.task_types import FL_MODELS

#: Hyper-parameters of one local round per architecture (SGD for TinyNet, AdamW for the adapter).
FIT = {
    TINYNET: {"epochs": 1, "lr": 0.1, "batch_size": 16, "seed": 3},
    MINILM_LORA: {"epochs": 2, "lr": 0.005, "batch_size": 16, "seed": 3},
}
#: The reader on short sequences: the contract is the same, the CPU bill a fraction.
SHORT_READER = ReaderArchitecture(ReaderConfig(max_length=64))


@pytest.fixture(params=names())
def arch(request: pytest.FixtureRequest):
    return SHORT_READER if request.param == MINILM_LORA else architecture(request.param)


def geo_documents():
    raw = (Path(demo_data.__file__).parent / "owm-geo.json").read_bytes()
    return parse_dataset(raw).documents[:12]


def documents_for(arch):
    return geo_documents() if arch.name == MINILM_LORA else ()


def round_input(arch, number: int = 1, partitions: int = 10) -> dict:
    return {"sub_model": "owm-geo", "round": number,
            **arch.round_data(number, partitions, documents_for(arch))}


def test_the_registry_and_the_task_schema_name_the_same_architectures():
    assert names() == tuple(sorted(FL_MODELS))
    assert TINYNET in names()


def test_an_unknown_architecture_is_refused_naming_the_field():
    with pytest.raises(InvalidValue) as caught:
        architecture("gpt-9")
    assert caught.value.field == "model"


def test_genesis_is_deterministic_per_sub_model_and_matches_the_layout(arch):
    first = arch.genesis("owm-geo").parameters()
    again = arch.genesis("owm-geo").parameters()
    other = arch.genesis("owm-history").parameters()
    assert [a.shape for a in first] == [tuple(shape) for _, shape in arch.layout()]
    assert all(a.dtype == np.float32 for a in first)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_the_flat_vector_and_the_named_tensors_round_trip(arch):
    arrays = arch.genesis("owm-geo").parameters()
    flat = flatten(arrays)
    assert flat.dtype == np.float32 and flat.size == size(arch)
    back = unflatten(flat, arch)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True))
    tensors = named(arch, arrays)
    assert architecture_of({"__version__": np.array("v"), **tensors}).name == arch.name
    assert all(np.array_equal(a, b) for a, b in zip(arrays, from_named(arch, tensors),
                                                      strict=True))


def test_a_flat_vector_of_the_wrong_size_is_refused_naming_the_weights(arch):
    with pytest.raises(InvalidValue) as caught:
        unflatten(np.zeros(size(arch) + 1, dtype=np.float32), arch)
    assert caught.value.field == "weights"


def test_a_misshapen_or_missing_tensor_is_refused_by_name(arch):
    tensors = named(arch, arch.genesis("owm-geo").parameters())
    first = next(iter(tensors))
    with pytest.raises(ValueError, match=first):
        from_named(arch, {**tensors, first: np.zeros((1, 1), dtype=np.float32)})
    with pytest.raises(ValueError, match=first):
        from_named(arch, {k: v for k, v in tensors.items() if k != first})
    model = arch.genesis("owm-geo")
    with pytest.raises(ValueError):
        model.set_parameters(model.parameters()[:-1])


def test_set_parameters_replaces_what_parameters_returns(arch):
    model = arch.genesis("owm-geo")
    other = arch.genesis("owm-history").parameters()
    model.set_parameters(other)
    assert all(np.array_equal(a, b) for a, b in zip(model.parameters(), other, strict=True))


def test_fitting_on_a_rounds_data_changes_the_weights_and_lowers_the_loss(arch):
    model = arch.genesis("owm-geo")
    data = arch.local_data(round_input(arch))
    holdout = arch.holdout(documents_for(arch))
    before_params = flatten(model.parameters())
    _, before = model.evaluate(holdout)
    examples, loss = model.fit(data, **FIT[arch.name])
    accuracy, after = model.evaluate(holdout)
    assert examples > 0 and np.isfinite(loss)
    assert not np.array_equal(before_params, flatten(model.parameters()))
    assert 0.0 <= accuracy <= 1.0 and after < before


def test_fitting_is_reproducible_so_redundant_replicas_agree(arch):
    data = arch.local_data(round_input(arch))[:8]
    runs = []
    for _ in range(2):
        model = arch.genesis("owm-geo")
        model.fit(data, **{**FIT[arch.name], "epochs": 1})
        runs.append(flatten(model.parameters()))
    assert np.array_equal(runs[0], runs[1])


def test_a_diverged_model_is_refused_or_scores_zero_accuracy_and_infinite_loss(arch):
    model = arch.genesis("owm-geo")
    try:
        model.set_parameters([np.full_like(a, np.nan) for a in model.parameters()])
    except ValueError:
        return
    assert model.evaluate(arch.holdout(documents_for(arch))) == (0.0, float("inf"))
