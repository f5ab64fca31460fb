"""build_plan: filtering, high-resource tasks, stages, steps and expected passes."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.planner import PlanError, build_plan, eval_split_size, stage_steps


def task(name, type_="classification", **extra):
    return {
        "name": name,
        "type": type_,
        "instruction": f"do {name}",
        "data": {"train": f"{name}.jsonl"},
        **extra,
    }


def spec(tasks, **sections) -> MultiTaskModelSpec:
    return MultiTaskModelSpec.model_validate({"baseModel": {"id": "m"}, "tasks": tasks, **sections})


MIXED = [
    task("intent", labels=["a", "b", "c"]),
    task("sentiment", labels=["pos", "neg"]),
    task("urgency", taxonomy="ordinal"),
    task("summary", "generation"),
    task("title", "generation"),
]
COUNTS = {"intent": 20000, "sentiment": 3000, "urgency": 500, "summary": 800, "title": 100}


def by_name(plan):
    return {t.name: t for t in plan.tasks}, {s.name: s for s in plan.stages}


def test_by_type_keeps_the_largest_group_and_says_why_others_are_out():
    plan = build_plan(spec(MIXED), COUNTS)
    tasks, stages = by_name(plan)
    assert plan.groups == ["classification"]
    assert [t for t in tasks if tasks[t].included] == ["intent", "sentiment", "urgency"]
    assert "filtered out: group 'generation' is not kept" in tasks["summary"].reason
    assert "keeps its own service" in tasks["summary"].reason
    assert list(stages) == ["stage1", "stage2"]
    assert stages["stage1"].tasks == ["intent"] and stages["stage1"].weights == {"intent": 1.0}
    assert stages["stage2"].init_from == "stage1"
    assert set(stages["stage2"].tasks) == {"intent", "sentiment", "urgency"}


def test_by_taxonomy_splits_classification_kinds():
    plan = build_plan(spec(MIXED, recipe={"taskFiltering": "byTaxonomy"}), COUNTS)
    tasks, _ = by_name(plan)
    assert tasks["intent"].taxonomy == "multiclass"  # 3 declared labels
    assert tasks["sentiment"].taxonomy == "binary"  # 2 declared labels
    assert tasks["urgency"].taxonomy == "ordinal"  # declared
    assert {t.group for t in plan.tasks} == {"multiclass", "binary", "ordinal", "generation"}
    # generation has two tasks; every classification group has one
    assert plan.groups == ["generation"]


def test_taxonomy_is_inferred_from_data_labels():
    plan = build_plan(
        spec([task("a"), task("b")], recipe={"taskFiltering": "byTaxonomy"}),
        {"a": 10, "b": 10},
        labels={"a": ["x", "y"], "b": ["x", "y", "z"]},
    )
    tasks, _ = by_name(plan)
    assert (tasks["a"].taxonomy, tasks["b"].taxonomy) == ("binary", "multiclass")


def test_none_keeps_everything_in_one_group():
    plan = build_plan(spec(MIXED, recipe={"taskFiltering": "none"}), COUNTS)
    assert plan.groups == ["all"] and all(t.included for t in plan.tasks)


def test_keep_generation_keeps_the_generation_group():
    plan = build_plan(spec(MIXED, recipe={"keep": "generation"}), COUNTS)
    tasks, stages = by_name(plan)
    assert plan.groups == ["generation"]
    assert tasks["summary"].included and not tasks["intent"].included
    assert "stage1" not in stages and plan.skipped[0].name == "stage1"


def test_ties_between_groups_go_to_more_examples():
    tasks = [task("a"), task("b", "generation")]
    plan = build_plan(spec(tasks), {"a": 10, "b": 50})
    assert plan.groups == ["generation"]


def test_all_as_adapters_plans_stages_per_group():
    plan = build_plan(spec(MIXED, recipe={"keep": "all-as-adapters"}), COUNTS)
    _, stages = by_name(plan)
    assert plan.groups == ["classification", "generation"]
    assert all(t.included for t in plan.tasks)
    assert set(stages) == {"stage1-classification", "stage2-classification", "stage2-generation"}
    assert stages["stage2-generation"].group == "generation"
    assert stages["stage2-generation"].init_from is None
    assert [s.name for s in plan.skipped] == ["stage1-generation"]


def test_stage1_is_skipped_without_high_resource_tasks():
    plan = build_plan(spec(MIXED), {**COUNTS, "intent": 9999})
    _, stages = by_name(plan)
    assert list(stages) == ["stage2"] and stages["stage2"].init_from is None
    assert "no task in group 'classification' is high-resource" in plan.skipped[0].reason


def test_high_resource_override_wins_over_the_threshold():
    tasks = [task("intent", highResource=False), task("sentiment", highResource=True), task("x")]
    plan = build_plan(spec(tasks), {"intent": 50000, "sentiment": 10, "x": 10})
    by, stages = by_name(plan)
    assert not by["intent"].high_resource and by["sentiment"].high_resource
    assert stages["stage1"].tasks == ["sentiment"]


def test_stage1_is_instance_balanced_over_high_resource_tasks():
    tasks = [task("a"), task("b"), task("c")]
    plan = build_plan(spec(tasks), {"a": 30000, "b": 10000, "c": 5})
    _, stages = by_name(plan)
    assert stages["stage1"].weights == pytest.approx({"a": 0.75, "b": 0.25})
    assert stages["stage1"].epoch_examples == 40000
    assert stages["stage1"].steps == math.ceil(2 * 40000 / 16)  # default 2 epochs, batch 16


def test_stage2_is_temperature_scaled_with_the_limit_and_passes_add_up():
    tasks = [task("a"), task("b")]
    recipe = {"stage2": {"temperature": 2.0, "datasetSizeLimit": 10000, "epochs": 1}}
    plan = build_plan(
        spec(tasks, recipe=recipe, training={"batchSize": 10}), {"a": 40000, "b": 2500}
    )
    _, stages = by_name(plan)
    s2 = stages["stage2"]
    assert s2.weights["a"] == pytest.approx(100 / 150)  # sqrt(10000) / (sqrt(10000) + sqrt(2500))
    assert s2.epoch_examples == 12500
    assert s2.steps == 1250
    for name, n in {"a": 40000, "b": 2500}.items():
        assert s2.expected_passes[name] == pytest.approx(s2.steps * 10 * s2.weights[name] / n)


def test_max_steps_caps_every_stage():
    plan = build_plan(spec(MIXED, training={"maxSteps": 7}), COUNTS)
    assert all(s.steps == 7 for s in plan.stages)


def test_baselines_are_planned_only_when_asked_and_missing():
    tasks = [task("a", baseline={"score": 0.9}), task("b"), task("c")]
    counts = {"a": 20000, "b": 100, "c": 50}
    without = build_plan(spec(tasks), counts)
    assert [s.kind for s in without.stages] == ["stage1", "stage2"]
    assert "cannot qualify" in by_name(without)[0]["b"].reason
    plan = build_plan(spec(tasks, recipe={"trainBaselines": True}), counts)
    _, stages = by_name(plan)
    assert [s for s in stages if s.startswith("baseline-")] == ["baseline-b", "baseline-c"]
    assert stages["baseline-b"].weights == {"b": 1.0}
    assert stages["baseline-b"].epochs == 1.0  # stage2 epochs; b is not high-resource


def test_missing_or_empty_counts_are_errors():
    with pytest.raises(PlanError, match="no example count for task"):
        build_plan(spec(MIXED), {"intent": 5})
    with pytest.raises(PlanError, match="no training examples: title"):
        build_plan(spec(MIXED), {**COUNTS, "title": 0})


def test_plan_json_has_the_documented_keys():
    wire = build_plan(spec(MIXED), COUNTS).to_wire()
    assert set(wire["tasks"][0]) >= {"name", "included", "reason", "highResource", "examples"}
    assert set(wire["stages"][0]) >= {"name", "steps", "weights"}


@given(st.integers(0, 10**6), st.floats(0.01, 0.99))
def test_eval_split_leaves_data_on_both_sides(total, fraction):
    held = eval_split_size(total, fraction)
    if total < 2:
        assert held == 0
    else:
        assert 1 <= held <= total - 1
        assert abs(held - total * fraction) <= max(1, 0.5 + 1e-9)


@given(st.floats(0.01, 100), st.integers(1, 10**7), st.integers(1, 4096))
def test_stage_steps_cover_the_epochs(epochs, examples, batch):
    steps = stage_steps(epochs, examples, batch, None)
    assert steps >= 1
    assert steps * batch >= epochs * examples * (1 - 1e-9)
    assert (steps - 1) * batch < epochs * examples or steps == 1
