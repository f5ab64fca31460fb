"""Serving cost before and after cutover, in GPUs."""

from __future__ import annotations

import pytest
from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.cost import serving_cost


def spec(n_tasks: int, gpus: int = 1, **serving) -> MultiTaskModelSpec:
    tasks = [{"name": f"t{i}", "type": "classification", "instruction": "x",
              "data": {"train": "x.jsonl"}, "baseline": {"gpus": gpus}} for i in range(n_tasks)]
    return MultiTaskModelSpec.model_validate(
        {"baseModel": {"id": "m"}, "tasks": tasks, "serving": serving})


def test_the_papers_headline_eleven_tasks_on_one_gpu():
    cost = serving_cost(spec(11), [f"t{i}" for i in range(11)])
    assert (cost.gpus_before, cost.gpus_after) == (11, 1)
    assert cost.reduction == pytest.approx(1 - 1 / 11)
    assert cost.saving == "90.9%"


def test_tasks_that_stay_keep_their_gpus():
    cost = serving_cost(spec(4, gpus=2), ["t0", "t1"])
    assert (cost.gpus_before, cost.gpus_after) == (8, 1 + 4)


def test_nothing_qualified_changes_nothing():
    cost = serving_cost(spec(3), [])
    assert (cost.gpus_before, cost.gpus_after, cost.reduction) == (3, 3, 0.0)


def test_observed_gpus_win_and_autoscaling_counts_min_replicas():
    s = spec(3, replicas=5, autoscaling={"minReplicas": 2, "maxReplicas": 6},
             resources={"gpus": 2})
    cost = serving_cost(s, ["t0", "t1", "t2"], observed_gpus={"t0": 4})
    assert (cost.gpus_before, cost.gpus_after) == (6, 4)


def test_no_gpus_before_is_no_saving():
    assert serving_cost(spec(2, gpus=0), ["t0"]).reduction == 0.0
