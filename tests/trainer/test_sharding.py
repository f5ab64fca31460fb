"""Sharding a stage's schedule over data-parallel ranks keeps the mixture exact.

The schedule (which task and example fills every slot of every step) is drawn once, from the
global batch size, before any sharding; each rank takes its part of each step. Over a whole
stage, every slot must go to exactly one rank, so the examples trained on and the per-task
counts are those of a single process, for any number of ranks."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from multitask_operator.planner import temperature_scaled
from multitask_trainer.sampling import MixtureSchedule, padded_tokens, step_shards

SIZES = {"big": 300, "mid": 45, "small": 7}
BATCH, STEPS = 24, 40  # 960 draws: several epochs of "small" and "mid", most of "big"


def _schedule() -> MixtureSchedule:
    weights = temperature_scaled(SIZES, temperature=2.0, limit=200)
    return MixtureSchedule(weights, SIZES, BATCH, STEPS, seed=11)


def _lengths(schedule: MixtureSchedule) -> list[np.ndarray]:
    """Token lengths per task and example, as the trainer has them after tokenizing."""
    rng = np.random.default_rng(5)
    return [rng.integers(8, 300, size=int(n)) for n in schedule.sizes]


def _drawn_by_rank(schedule, lengths, world, equal_passes=False):
    """(task, example) pairs each rank trains on over the stage, in step order."""
    drawn: list[list[tuple[int, int]]] = [[] for _ in range(world)]
    for step in range(schedule.steps):
        task_ids, example_ids = schedule.batch(step)
        step_lengths = np.array([lengths[t][e] for t, e in zip(task_ids, example_ids,
                                                                 strict=True)])
        shards = step_shards(step_lengths, 600, world, overhead_tokens=64,
                             equal_passes=equal_passes)
        positions = np.concatenate([np.concatenate(g) for g in shards if g])
        assert sorted(positions.tolist()) == list(range(BATCH)), f"step {step}"
        for rank, groups in enumerate(shards):
            drawn[rank].extend((int(task_ids[p]), int(example_ids[p]))
                               for g in groups for p in g)
    return drawn


@pytest.mark.parametrize("world", [2, 3, 4, 8, 24])
@pytest.mark.parametrize("equal_passes", [False, True])
def test_every_slot_goes_to_exactly_one_rank_and_the_mixture_is_unchanged(world,
                                                                            equal_passes):
    schedule = _schedule()
    lengths = _lengths(schedule)
    single = _drawn_by_rank(schedule, lengths, 1)[0]
    ranks = _drawn_by_rank(schedule, lengths, world, equal_passes)
    assert all(ranks), "every rank trains on something"
    assert Counter(pair for drawn in ranks for pair in drawn) == Counter(single)
    per_task = Counter(task for drawn in ranks for task, _ in drawn)
    assert per_task == Counter(schedule.task_ids.tolist())
    # Each rank holds a share of the step, not a copy: about BATCH / world examples a step.
    assert max(len(drawn) for drawn in ranks) <= STEPS * -(-BATCH // world)


@pytest.mark.parametrize("world", [1, 3, 8])
def test_each_example_is_seen_once_per_epoch_across_ranks(world):
    schedule = _schedule()
    lengths = _lengths(schedule)
    ranks = _drawn_by_rank(schedule, lengths, world)
    # Walk the slots in schedule order; which rank trained a slot must not matter.
    owner = {}
    for rank, drawn in enumerate(ranks):
        for slot, pair in enumerate(drawn):
            owner.setdefault(pair, []).append((rank, slot))
    for t, n in enumerate(schedule.sizes):
        seen = schedule.example_ids[schedule.task_ids == t]
        epochs = len(seen) // int(n)
        for e in range(epochs):
            assert sorted(seen[e * n : (e + 1) * n].tolist()) == list(range(n))
        trained = Counter(e for drawn in ranks for task, e in drawn if task == t)
        assert min(trained.values()) >= epochs and max(trained.values()) <= epochs + 1


def test_equal_passes_gives_every_rank_the_same_number_of_micro_batches():
    rng = np.random.default_rng(3)
    for _ in range(50):
        lengths = rng.integers(4, 400, size=int(rng.integers(4, 40)))
        world = int(rng.integers(2, min(8, len(lengths)) + 1))
        plain = step_shards(lengths, 800, world, overhead_tokens=100)
        equal = step_shards(lengths, 800, world, overhead_tokens=100, equal_passes=True)
        assert len({len(groups) for groups in equal}) == 1
        assert len(equal[0]) == max(len(groups) for groups in plain)
        for rank in range(world):
            mine = np.concatenate(equal[rank])
            assert sorted(mine.tolist()) == sorted(np.concatenate(plain[rank]).tolist())
            for g in equal[rank]:
                assert len(g) <= 1 or len(g) * lengths[g].max() <= 800


def test_a_rank_with_fewer_examples_than_passes_gets_empty_passes():
    # Snake order deals 100 to rank 0 and 60, 50 to rank 1, which a budget of 100 tokens
    # cannot hold together: rank 1 makes two passes, rank 0 one that it cannot split.
    lengths = np.array([100, 60, 50])
    plain = step_shards(lengths, 100, 2)
    assert [len(g) for g in plain] == [1, 2]
    equal = step_shards(lengths, 100, 2, equal_passes=True)
    assert [len(g) for g in equal] == [2, 2]
    assert [len(g) for g in equal[0]] == [1, 0]
    assert padded_tokens(lengths, [g for groups in equal for g in groups]) == 210
