"""The mixture sampler draws what the plan says, deterministically, and buckets by length."""

from __future__ import annotations

import numpy as np
import pytest
from multitask_operator.planner import temperature_scaled
from multitask_trainer.sampling import MixtureSchedule, micro_batches, padded_tokens

SIZES = {"big": 5000, "mid": 300, "small": 20}


def test_empirical_mixture_matches_the_plan_within_tolerance():
    weights = temperature_scaled(SIZES, temperature=2.0, limit=1000)
    schedule = MixtureSchedule(weights, SIZES, batch_size=32, steps=2000, seed=7)
    draws = len(schedule.task_ids)
    counts = np.bincount(schedule.task_ids, minlength=3)
    for i, task in enumerate(schedule.tasks):
        p = weights[task]
        # 5 standard deviations of a binomial: fails by chance about once in 3 million runs.
        assert abs(counts[i] / draws - p) < 5 * np.sqrt(p * (1 - p) / draws), task


def test_every_example_is_seen_once_before_any_is_seen_twice():
    schedule = MixtureSchedule({"a": 0.5, "b": 0.5}, {"a": 7, "b": 50}, 16, 100, seed=1)
    seen_a = schedule.example_ids[schedule.task_ids == 0]
    for start in range(0, len(seen_a) - 7, 7):
        assert sorted(seen_a[start : start + 7]) == list(range(7))
    seen_b = schedule.example_ids[schedule.task_ids == 1]
    assert sorted(seen_b[:50]) == list(range(50))
    assert seen_b.max() < 50 and seen_a.max() < 7


def test_same_seed_same_schedule_other_seed_other_schedule():
    args = ({"a": 0.3, "b": 0.7}, {"a": 100, "b": 100}, 8, 50)
    one, two, other = (MixtureSchedule(*args, seed=s) for s in (3, 3, 4))
    for step in (0, 17, 49):  # resuming at any step sees exactly the same batch
        pairs = zip(one.batch(step), two.batch(step), strict=True)
        assert all(np.array_equal(x, y) for x, y in pairs)
    assert one.fingerprint() == two.fingerprint() != other.fingerprint()
    assert not np.array_equal(one.task_ids, other.task_ids)
    with pytest.raises(IndexError):
        one.batch(50)


def test_a_task_without_examples_is_refused():
    with pytest.raises(ValueError, match="empty"):
        MixtureSchedule({"full": 0.5, "empty": 0.5}, {"full": 3, "empty": 0}, 4, 2, seed=0)


def test_micro_batches_cover_the_step_once_within_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=64)
    seen = []
    for rank in range(4):
        groups = micro_batches(lengths, token_budget=400, world_size=4, rank=rank)
        assert groups, "every rank gets work"
        for g in groups:
            assert len(g) * lengths[g].max() <= 400 or len(g) == 1
            seen.extend(g.tolist())
    assert sorted(seen) == list(range(64))


def test_snake_order_balances_tokens_across_ranks():
    lengths = np.arange(1, 65) * 10
    tokens = [lengths[np.concatenate(micro_batches(lengths, 10**6, 4, r))].sum() for r in range(4)]
    assert max(tokens) - min(tokens) <= lengths.max()


def test_length_bucketing_wastes_less_than_random_batches():
    rng = np.random.default_rng(1)
    lengths = rng.integers(10, 500, size=256)
    bucketed = padded_tokens(lengths, micro_batches(lengths, token_budget=2000))
    random_groups = [np.arange(i, min(i + 4, 256)) for i in range(0, 256, 4)]
    assert lengths.sum() / bucketed > 0.9
    assert bucketed < padded_tokens(lengths, random_groups)
