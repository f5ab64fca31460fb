"""Property tests of the mixture math (hypothesis)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multitask_operator.planner import (
    MixtureError,
    capped_size,
    instance_balanced,
    temperature_scaled,
)

names = st.text(alphabet="abcdefghij", min_size=1, max_size=6)
counts_st = st.dictionaries(
    names, st.integers(min_value=1, max_value=10**9), min_size=1, max_size=30
)
taus = st.floats(min_value=0.05, max_value=1000, allow_nan=False)
limits = st.one_of(st.none(), st.integers(min_value=1, max_value=10**9))


@given(counts_st, taus, limits)
def test_weights_sum_to_one_and_are_probabilities(counts, tau, limit):
    weights = temperature_scaled(counts, tau, limit)
    assert set(weights) == set(counts)
    assert math.isclose(math.fsum(weights.values()), 1.0, rel_tol=1e-9)
    assert all(0 <= w <= 1 for w in weights.values())


@given(counts_st)
def test_tau_one_without_limit_is_examples_proportional(counts):
    weights = temperature_scaled(counts, 1.0, None)
    balanced = instance_balanced(counts)
    total = sum(counts.values())
    for name, n in counts.items():
        assert math.isclose(weights[name], n / total, rel_tol=1e-9, abs_tol=1e-15)
        assert math.isclose(balanced[name], n / total, rel_tol=1e-12)


@given(st.dictionaries(names, st.integers(1, 10**6), min_size=2, max_size=20))
def test_large_tau_tends_to_uniform(counts):
    uniform = 1 / len(counts)
    weights = temperature_scaled(counts, 1e6, None)
    assert all(math.isclose(w, uniform, rel_tol=1e-4) for w in weights.values())

    # and the distance to uniform shrinks as tau grows
    def distance(tau):
        return sum(abs(w - uniform) for w in temperature_scaled(counts, tau, None).values())

    assert distance(10.0) <= distance(2.0) + 1e-12 <= distance(1.0) + 2e-12


@given(counts_st, taus, st.integers(min_value=1, max_value=10**6))
def test_the_size_limit_is_respected(counts, tau, limit):
    """Tasks at or above K are indistinguishable; a capped task never outweighs one at K."""
    weights = temperature_scaled(counts, tau, limit)
    capped = [weights[t] for t, n in counts.items() if n >= limit]
    if capped:
        assert max(capped) - min(capped) <= 1e-12
        assert all(w <= capped[0] + 1e-12 for w in weights.values())
    assert temperature_scaled(counts, tau, limit) == temperature_scaled(
        {t: min(n, limit) for t, n in counts.items()}, tau, None
    )
    assert capped_size(counts, limit) == sum(min(n, limit) for n in counts.values())


@given(counts_st, taus, limits, st.randoms(use_true_random=False))
def test_order_of_tasks_does_not_matter(counts, tau, limit, rnd: random.Random):
    items = list(counts.items())
    rnd.shuffle(items)
    shuffled = temperature_scaled(dict(items), tau, limit)
    original = temperature_scaled(counts, tau, limit)
    assert all(math.isclose(shuffled[t], original[t], rel_tol=1e-12) for t in counts)


@given(st.dictionaries(names, st.integers(1, 10**6), min_size=2, max_size=10), taus, limits)
def test_more_data_never_means_less_weight(counts, tau, limit):
    weights = temperature_scaled(counts, tau, limit)
    ordered = sorted(counts, key=counts.get)
    for small, big in zip(ordered, ordered[1:], strict=False):
        assert weights[small] <= weights[big] + 1e-12


@settings(max_examples=50)
@given(st.integers(1, 10**6), st.integers(1, 10**6))
def test_two_tasks_match_the_closed_form(a, b):
    tau, limit = 2.0, 5000
    weights = temperature_scaled({"a": a, "b": b}, tau, limit)
    wa, wb = min(a, limit) ** 0.5, min(b, limit) ** 0.5
    assert math.isclose(weights["a"], wa / (wa + wb), rel_tol=1e-9)


def test_tiny_temperature_does_not_overflow():
    weights = temperature_scaled({"big": 10**6, "small": 10}, 0.01, None)
    assert weights["big"] == pytest.approx(1.0) and weights["small"] < 1e-100


@pytest.mark.parametrize(
    ("counts", "tau", "limit", "fragment"),
    [
        ({}, 1.0, None, "at least one task"),
        ({"a": 0, "b": 3}, 1.0, None, "no training examples cannot be mixed: a"),
        ({"a": 1}, 0.0, None, "temperature must be > 0"),
        ({"a": 1}, 1.0, 0, "limit must be >= 1"),
    ],
)
def test_bad_mixture_inputs(counts, tau, limit, fragment):
    with pytest.raises(MixtureError, match=fragment):
        temperature_scaled(counts, tau, limit)
