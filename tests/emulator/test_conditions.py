"""Parsing of requested conditions: every accepted form, and errors that name the problem."""

from __future__ import annotations

import numpy as np
import pytest

from emulator.conditions import ConditionError, parse_condition_text, parse_conditions
from emulator.domains import get_domain


@pytest.fixture
def calo():
    return get_domain("calo")


def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("raw", [50, 50.0, "50", {"energy": 50}, {"energy": "50"}, {"energy": {"uniform": [50, 50]}}])
def test_fixed_forms(calo, raw):
    spec = parse_conditions(calo, raw, n=4)
    np.testing.assert_array_equal(spec.draw(0, 4, rng()), np.full((4, 1), 50.0, np.float32))
    assert not spec.extrapolated


def test_uniform_and_log_uniform(calo):
    u = parse_conditions(calo, "1:100", n=10_000).draw(0, 10_000, rng())
    assert u.min() >= 1 and u.max() <= 100 and abs(np.median(u) - 50.5) < 3
    lu = parse_conditions(calo, {"energy": {"log_uniform": [1, 100]}}, n=10_000).draw(0, 10_000, rng())
    assert lu.min() >= 1 and lu.max() <= 100 and abs(np.median(lu) - 10.0) < 1.0
    assert parse_condition_text("1:100:log") == {"log_uniform": [1.0, 100.0]}


def test_list_is_sliced_per_block(calo):
    spec = parse_conditions(calo, {"energy": [1, 2, 3, 4, 5]}, n=5)
    np.testing.assert_array_equal(spec.draw(2, 5, rng())[:, 0], [3, 4, 5])
    assert parse_condition_text("10,20") == [10.0, 20.0]


@pytest.mark.parametrize(
    "raw, match",
    [
        (150, r"energy = 150 GeV is outside the model's valid range \[1, 100\] GeV"),
        ({"energy": {"uniform": [0.5, 10]}}, "0.5"),
        ({"energy": [1, 2]}, "got 2 values for 3 samples"),
        ({"energy": [1, float("nan"), 3]}, "not finite"),
        ({"energy": {"uniform": [10, 1]}}, "lo > hi"),
        ({"energy": {"gauss": [1, 2]}}, "uniform"),
        ({"momentum": 5}, r"unknown condition\(s\) \['momentum'\]"),
        ({}, "missing condition"),
        ("abc", "cannot parse condition 'abc'"),
        (True, "expected a number"),
    ],
)
def test_errors_name_the_problem(calo, raw, match):
    with pytest.raises(ConditionError, match=match):
        parse_conditions(calo, raw, n=3)


def test_extrapolation_only_when_allowed(calo):
    spec = parse_conditions(calo, {"energy": [50, 150, 20]}, n=3, allow_extrapolation=True)
    assert spec.extrapolated
    assert not parse_conditions(calo, "1:100", n=3, allow_extrapolation=True).extrapolated
    with pytest.raises(ConditionError, match="150"):
        parse_conditions(calo, {"energy": [50, 150, 20]}, n=3)


def test_draw_range_is_checked(calo):
    with pytest.raises(ValueError, match="outside"):
        parse_conditions(calo, 50, n=3).draw(2, 5, rng())
