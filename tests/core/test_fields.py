"""Shared field rules: remembered verdicts and the fast copy give what the plain rules give."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from owm_core import fields
from owm_core.errors import InvalidValue
from owm_core.identity.keys import node_id_from_public_key


@attrs.frozen
class _Sample:
    key: str = attrs.field(validator=fields.hex_digest(4))
    amount: int = attrs.field(validator=fields.money())
    _hidden: str = attrs.field(default="x", validator=fields.text(max_len=8, pattern="[a-z]+"))
    derived: int = attrs.field(init=False, default=0)


@given(st.text(max_size=12), st.text(alphabet="0123456789abcdefX", max_size=10))
def test_a_pattern_check_gives_the_same_verdict_the_second_time(first: str, second: str) -> None:
    check = fields.text(min_len=8, max_len=8, pattern=r"[0-9a-f]+")
    attribute = attrs.fields(_Sample).key
    for value in (first, second, first, second):
        ok = len(value) == 8 and all(c in "0123456789abcdef" for c in value)
        if ok:
            check(None, attribute, value)
        else:
            with pytest.raises(InvalidValue):
                check(None, attribute, value)


def test_a_remembered_string_does_not_let_a_non_string_through() -> None:
    sample = _Sample("00ff00ff", 1)
    assert sample.key == "00ff00ff"
    with pytest.raises(InvalidValue):
        _Sample(b"00ff00ff", 1)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["a", "bc", "xyz"]))
def test_the_fast_copy_equals_attrs_evolve_private_fields_included(amount: int,
                                                                    hidden: str) -> None:
    sample = _Sample("0a0b0c0d", 5, hidden)
    assert fields.evolve(sample, amount=amount) == attrs.evolve(sample, amount=amount)
    assert fields.evolve(sample, hidden="q") == attrs.evolve(sample, hidden="q")
    assert fields.evolve(sample) == sample


def test_the_fast_copy_validates_like_a_new_value() -> None:
    sample = _Sample("0a0b0c0d", 5)
    with pytest.raises(InvalidValue):
        fields.evolve(sample, amount=-1)
    with pytest.raises(InvalidValue):
        fields.evolve(sample, key="nothex!!")
    with pytest.raises(TypeError):
        fields.evolve(sample, derived=3)


def test_a_node_id_is_derived_the_same_and_a_bad_key_refused_each_time() -> None:
    key = "ab" * 32
    assert node_id_from_public_key(key) == node_id_from_public_key(key)
    for _ in range(2):
        with pytest.raises(InvalidValue):
            node_id_from_public_key("not a key")
        with pytest.raises(InvalidValue):
            node_id_from_public_key(["unhashable"])  # type: ignore[arg-type]


@attrs.frozen
class _Wide:
    a: int
    b: str
    c: bool


@attrs.frozen
class _Narrow:
    a: int = attrs.field(validator=fields.integer(minimum=0))
    b: str = ""


@given(a=st.integers(0, 10**6), b=st.text(max_size=8), c=st.booleans())
def test_a_copy_takes_the_same_named_attributes_of_its_source_and_the_given_ones(
    a: int, b: str, c: bool
) -> None:
    assert fields.copied(_Narrow, _Wide(a, b, c)) == _Narrow(a, b)
    assert fields.copied(_Narrow, _Wide(a, b, c), b="given") == _Narrow(a, "given")


def test_a_copy_is_validated_like_any_new_value() -> None:
    with pytest.raises(InvalidValue):
        fields.copied(_Narrow, _Wide(-1, "", False))


@attrs.frozen
class _KeywordOnly:
    first: int = attrs.field(validator=fields.integer(0, 9))
    second: str = attrs.field(kw_only=True, default="a")


def test_the_fast_copy_of_a_class_with_keyword_only_fields_equals_attrs_evolve() -> None:
    sample = _KeywordOnly(1, second="b")
    assert fields.evolve(sample, first=2) == attrs.evolve(sample, first=2)
    assert fields.evolve(sample, second="c") == _KeywordOnly(1, second="c")
    with pytest.raises(InvalidValue):
        fields.evolve(sample, first=10)


_BOUNDS = st.one_of(st.none(), st.integers(-5, 5))


@given(_BOUNDS, _BOUNDS, st.one_of(st.integers(-10, 10), st.booleans(), st.floats(-3, 3),
                                   st.just("3"), st.just(2**70)))
def test_an_integer_check_accepts_exactly_the_ints_within_its_bounds(
        minimum: int | None, maximum: int | None, value: object) -> None:
    check = fields.integer(minimum, maximum)
    attribute = attrs.fields(_KeywordOnly).first
    ok = (type(value) is int and (minimum is None or value >= minimum)
          and (maximum is None or value <= maximum))
    if ok:
        check(None, attribute, value)
    else:
        with pytest.raises(InvalidValue):
            check(None, attribute, value)


@attrs.frozen
class _Amount:
    amount: int = attrs.field(validator=fields.money())


@given(st.integers(min_value=0, max_value=fields.MAX_MONEY))
def test_every_amount_up_to_all_the_bitcoin_there_will_be_in_msat_is_money(amount: int) -> None:
    assert _Amount(amount).amount == amount


@given(st.integers(min_value=fields.MAX_MONEY + 1, max_value=2**256))
def test_an_amount_beyond_all_the_bitcoin_there_will_be_is_refused_naming_its_field(
    amount: int,
) -> None:
    with pytest.raises(InvalidValue) as refused:
        _Amount(amount)
    assert refused.value.field == "amount"
    assert fields.MAX_MONEY < 2**63  # so every accepted amount fits a BIGINT column


def test_no_money_field_may_allow_more_than_all_the_bitcoin_there_will_be() -> None:
    with pytest.raises(ValueError):
        fields.money(maximum=fields.MAX_MONEY + 1)
