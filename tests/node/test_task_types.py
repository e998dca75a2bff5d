"""Built-in task types: schema validation names the field, output hashes are canonical."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owm_core.errors import InvalidValue
from owm_core.fl.aggregation import Rule
from owm_core.market.task_types import (
    AGGREGATION_RULES,
    FEATURES,
    capabilities,
    output_hash,
    text_features,
    validate_input,
)


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def reason(task_type: str, schema: str, version: int, data: bytes) -> InvalidValue:
    with pytest.raises(InvalidValue) as raised:
        validate_input(task_type, schema, version, data)
    return raised.value


def test_the_three_built_in_task_types_are_advertised():
    assert capabilities() == ("fl_training", "gradient_aggregation", "inference")


def test_aggregation_rules_are_exactly_the_rules_the_core_implements():
    assert set(AGGREGATION_RULES) == {r.value for r in Rule}


def test_a_valid_inference_input_is_accepted_and_decoded():
    schema, data = validate_input("inference", "owm.inference.text", 1, raw({"prompt": "hi"}))
    assert schema.schema_id == "owm.inference.text" and data == {"prompt": "hi"}


@pytest.mark.parametrize(
    ("task_type", "schema", "version", "payload", "field"),
    [
        ("mining", "owm.inference.text", 1, {"prompt": "x"}, "task_type"),
        ("inference", "owm.fl.train", 1, {"prompt": "x"}, "input_schema_id"),
        ("inference", "owm.inference.text", 2, {"prompt": "x"}, "input_schema_version"),
        ("inference", "owm.inference.text", 1, {}, "input.prompt"),
        ("inference", "owm.inference.text", 1, {"prompt": ""}, "input.prompt"),
        ("inference", "owm.inference.text", 1, {"prompt": "x", "evil": 1}, "input.evil"),
        ("inference", "owm.inference.features", 1,
         {"sub_model": "owm-geo", "features": [[0.0] * (FEATURES - 1)]}, "input.features[0]"),
        ("inference", "owm.inference.features", 1,
         {"sub_model": "Bad Name", "features": [[0.0] * FEATURES]}, "input.sub_model"),
        ("fl_training", "owm.fl.train", 1,
         {"sub_model": "m", "round": 1, "partition_id": 0, "epochs": 0, "lr": 0.1,
          "batch_size": 8, "seed": 1}, "input.epochs"),
        ("fl_training", "owm.fl.train", 1,
         {"sub_model": "m", "round": 1, "partition_id": 0, "epochs": 1, "lr": "fast",
          "batch_size": 8, "seed": 1}, "input.lr"),
        ("fl_training", "owm.fl.train", 1,
         {"sub_model": "m", "model": "gpt-9", "round": 1, "partition_id": 0, "epochs": 1,
          "lr": 0.1, "batch_size": 8, "seed": 1}, "input.model"),
        ("gradient_aggregation", "owm.fl.aggregate", 1,
         {"rule": "mean-ish", "f": 0, "updates": [[1.0]]}, "input.rule"),
        ("gradient_aggregation", "owm.fl.aggregate", 1,
         {"rule": "median", "f": 0, "updates": [[1.0, 2.0], [3.0]]}, "input.updates[1]"),
        ("gradient_aggregation", "owm.fl.aggregate", 1,
         {"rule": "fedavg", "f": 0, "updates": [[1.0], [2.0]], "weights": [1.0]},
         "input.weights"),
    ],
)
def test_an_invalid_input_is_refused_with_the_offending_field_named(
    task_type, schema, version, payload, field
):
    assert reason(task_type, schema, version, raw(payload)).field == field


@pytest.mark.parametrize(
    "data", [b"not json", b"[1, 2]", b'{"prompt": NaN}', b'{"prompt": "a", "prompt": "b"}',
             b"\xff\xfe"],
)
def test_malformed_input_bytes_are_refused_before_any_field_is_read(data):
    assert reason("inference", "owm.inference.text", 1, data).field == "input"


def test_a_matrix_cell_that_is_not_finite_is_pointed_at_exactly():
    features = [[0.0] * FEATURES, [0.0] * FEATURES]
    features[1][5] = True
    err = reason("inference", "owm.inference.features", 1,
                 raw({"sub_model": "m", "features": features}))
    assert err.field == "input.features[1][5]"


@settings(max_examples=60)
@given(st.dictionaries(st.text(min_size=1, max_size=5),
                       st.floats(allow_nan=False, allow_infinity=False, width=32), max_size=6))
def test_an_output_hash_does_not_depend_on_key_order(values):
    backward = dict(reversed(list(values.items())))
    assert output_hash(values) == output_hash(backward)


def test_float_noise_far_below_the_kept_digits_does_not_change_the_hash():
    logits = [0.123456789, -3.14159265358979, 2.0e-7, 12345.678]
    noisy = [v * (1 + 1e-13) for v in logits]
    assert output_hash({"logits": logits}) == output_hash({"logits": noisy})


def test_different_outputs_hash_differently():
    assert output_hash({"labels": [1]}) != output_hash({"labels": [2]})


def test_a_prompt_embeds_deterministically_into_the_model_width():
    assert text_features("hello") == text_features("hello") != text_features("hello!")
    assert len(text_features("hello")) == FEATURES
    assert all(-1.0 <= v < 1.0 for v in text_features("hello"))
