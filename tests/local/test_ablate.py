"""`mtm ablate`: the variants derived from a spec (same step budget, baselines as the planner
plans them), the table's arithmetic, and one reduced end-to-end run (slow)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from multitask_operator.api.results import EvalResults, TaskResult
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.loader import check_data, load_file
from multitask_operator.local.ablate import RunRecord
from multitask_operator.local.ablation_report import ablation_table, markdown
from multitask_operator.planner import build_plan, instance_balanced, temperature_scaled
from multitask_operator.planner.ablation import (
    AblationError,
    build_variants,
    sweep_limits,
)

from tests.conftest import EXAMPLES, REPO
from tests.local.reduced import write_intent_and_mood

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _local() -> tuple[MultiTaskModelSpec, dict[str, int], dict[str, list[str]]]:
    doc = load_file(EXAMPLES / "local" / "model.yaml").documents[0]
    data = check_data(doc)
    return doc.model.spec, data.counts, data.labels


def _variants(seed: int = 0, **kwargs):
    spec, counts, labels = _local()
    return {v.run_name: v for v in build_variants(spec, counts, labels, seed, **kwargs)}


def test_every_multi_task_variant_trains_the_recipes_steps():
    variants = _variants()
    recipe = variants["recipe"]
    assert [s.kind for s in recipe.plan.stages] == ["stage1", "stage2"]
    budget = sum(s.steps for s in recipe.plan.stages)
    for name in ("mtl-proportional", "mtl-temperature"):
        plan = variants[name].plan
        assert [s.kind for s in plan.stages] == ["stage2"], name  # one stage, no stage 1
        assert plan.stages[0].steps == budget == variants[name].steps, name


def test_one_stage_variants_mix_every_task_as_named():
    spec, counts, _ = _local()
    variants = _variants()
    proportional = variants["mtl-proportional"].plan.stages[0].weights
    assert proportional == pytest.approx(instance_balanced(counts))
    temperature = variants["mtl-temperature"].plan.stages[0].weights
    stage2 = spec.recipe.stage2
    assert temperature == pytest.approx(
        temperature_scaled(counts, stage2.temperature, stage2.dataset_size_limit))
    # The recipe keeps its filtering: the generation tasks are out of its unified model.
    assert set(variants["recipe"].plan.stages[-1].tasks) == {
        "intent", "sentiment", "urgency", "product"}
    assert variants["recipe"].spec.recipe == spec.recipe.model_copy(
        update={"train_baselines": False})


def test_single_task_runs_train_as_the_planners_baselines():
    spec, counts, labels = _local()
    variants = _variants()
    baselines = {s.tasks[0]: s.steps for s in build_plan(spec, counts, labels).stages
                 if s.kind == "baseline"}
    assert baselines  # examples/local trains baselines for its classification tasks
    for task, steps in baselines.items():
        run = variants[f"single-task/{task}"]
        assert [t.name for t in run.spec.tasks] == [task]
        assert run.steps == steps, task
    # Filtered-out tasks get a single-task run too: the one-stage variants serve them.
    assert variants["single-task/title"].steps == 36  # ceil(6 epochs x 96 / 16)


def test_seed_and_variants_are_applied():
    spec, counts, labels = _local()
    runs = build_variants(spec, counts, labels, 7, variants=["recipe"])
    assert [r.run_name for r in runs][-1] == "recipe"
    assert not any(r.name.startswith("mtl") for r in runs)
    assert {r.spec.training.seed for r in runs} == {7}
    assert not any(r.spec.recipe.train_baselines for r in runs)


def test_sweep_keeps_the_budget_and_skips_the_recipe_itself():
    variants = _variants(sweep=True)
    recipe = variants["recipe"]
    swept = [v for name, v in variants.items() if name.startswith("recipe-")]
    spec, counts, _ = _local()
    assert sweep_limits(recipe, counts) == [293, 400, 1200]  # median, the spec's K, no limit
    assert len(swept) == 3 * 3 - 1  # tau 2 with K 400 is the recipe
    for v in swept:
        assert v.steps == recipe.steps, v.name
        assert v.plan.stages[0] == recipe.plan.stages[0]  # stage 1 unchanged
        assert v.plan.stages[1].weights == pytest.approx(
            temperature_scaled({t: counts[t] for t in v.plan.stages[1].tasks},
                               v.temperature, v.limit))
    assert "recipe-t3.33-k1200" in variants


def test_budget_ignores_a_per_stage_cap_in_the_one_stage_variants():
    spec, counts, labels = _local()
    capped = spec.model_copy(update={"training": spec.training.model_copy(
        update={"max_steps": 100})})
    variants = {v.run_name: v for v in build_variants(capped, counts, labels, 0)}
    assert variants["recipe"].steps == 38 + 100  # stage 1, stage 2 capped at 100
    assert variants["mtl-temperature"].steps == 138
    assert variants["single-task/intent"].steps == 100  # baselines keep the cap


def test_unreachable_budget_and_unknown_variant_are_explained():
    spec, counts, labels = _local()
    with pytest.raises(AblationError, match="--variants: mtl-uniform is not a variant; "
                       "accepted: mtl-proportional, mtl-temperature, recipe"):
        build_variants(spec, counts, labels, 0, variants=["mtl-uniform"])
    with pytest.raises(AblationError, match="--variants: empty; accepted: one or more of"):
        build_variants(spec, counts, labels, 0, variants=[])
    # Stage 1 over a huge task, then a tiny capped stage 2: one stage over K-capped sizes
    # would need more than 100 epochs to train as many steps.
    long = spec.model_copy(update={"recipe": spec.recipe.model_copy(update={
        "stage1": spec.recipe.stage1.model_copy(update={"epochs": 90}),
        "stage2": spec.recipe.stage2.model_copy(update={"dataset_size_limit": 2})})})
    with pytest.raises(AblationError, match=r"variant mtl-temperature: matching the recipe's "
                       r"\d+ training steps needs recipe.stage2.epochs [\d.]+, but it accepts "
                       "at most 100"):
        build_variants(long, counts, labels, 0, variants=["mtl-temperature"])
    adapters = spec.model_copy(update={"recipe": spec.recipe.model_copy(
        update={"keep": "all-as-adapters"})})
    with pytest.raises(AblationError, match="--sweep needs one unified model"):
        build_variants(adapters, counts, labels, 0, sweep=True)


def test_benchmark_suite_is_reproducible_and_plans_one_budget(tmp_path):
    """benchmarks/recipe: the committed data is what generate.py writes (seed 20261123), the
    sizes span two orders of magnitude, and every variant fits the recipe's budget."""
    suite = REPO / "benchmarks" / "recipe"
    subprocess.run([sys.executable, str(suite / "generate.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for made in sorted(tmp_path.glob("*/*.jsonl")):
        committed = suite / "data" / made.relative_to(tmp_path)
        assert made.read_bytes() == committed.read_bytes(), committed
    doc = load_file(suite / "model.yaml").documents[0]
    data = check_data(doc)
    assert not data.problems and max(data.counts.values()) >= 100 * min(data.counts.values())
    taxonomies = {str(t.taxonomy) for t in doc.model.spec.tasks if t.taxonomy}
    assert taxonomies == {"binary", "ordinal", "multiclass"}
    assert any(t.type == "generation" for t in doc.model.spec.tasks)
    variants = build_variants(doc.model.spec, data.counts, data.labels, 0, sweep=True)
    budget = next(v.steps for v in variants if v.name == "recipe")
    assert {v.steps for v in variants if v.name != "single-task"} == {budget}


# --------------------------------------------------------------------------- the table


def _fake_run(root: Path, seed: int, variant: str, scores: dict[str, float], steps: list[int],
              seconds: float, task: str | None = None) -> RunRecord:
    """A finished run's files as the trainer writes them: plan.json, eval/results.json."""
    stages = [{"name": f"stage{i + 1}", "kind": f"stage{i + 1}", "tasks": list(scores),
               "weights": {t: 1 / len(scores) for t in scores}, "epochs": 1.0,
               "epochExamples": 10, "steps": s, "expectedPasses": {}}
              for i, s in enumerate(steps)]
    plan = {"groups": ["all"], "tasks": [], "stages": stages, "batchSize": 4}
    root.mkdir(parents=True)
    (root / "plan.json").write_text(json.dumps(plan))
    results = EvalResults(qualify_threshold=0.99, tasks=[
        TaskResult(name=t, type="classification", included=True, metric="accuracy", score=s,
                   baseline_source="none", qualified=False, examples=10)
        for t, s in scores.items()])
    (root / "eval").mkdir()
    (root / "eval" / "results.json").write_text(json.dumps(results.to_wire()))
    (root / "steps.json").write_text(json.dumps({s["name"]: seconds for s in stages}))
    return RunRecord(seed, variant, task, root)


def test_table_ratios_qualification_and_spread(tmp_path):
    spec, _, _ = _local()
    spec = spec.model_copy(update={"tasks": spec.tasks[:2]})  # intent, sentiment
    runs = []
    for seed, (a, b) in enumerate([(0.8, 0.5), (0.6, 0.5)]):
        for task, score in (("intent", a), ("sentiment", b)):
            runs.append(_fake_run(tmp_path / f"{seed}-st-{task}", seed, "single-task",
                                  {task: score}, [10], 1.0, task=task))
        runs.append(_fake_run(tmp_path / f"{seed}-r", seed, "recipe",
                              {"intent": 0.8, "sentiment": 0.4}, [3, 5], 2.0))
        runs.append(_fake_run(tmp_path / f"{seed}-p", seed, "mtl-proportional",
                              {"intent": 0.4, "sentiment": 0.5}, [8], 3.0))
    table = ablation_table("demo", "model.yaml", spec, runs)
    assert table["seeds"] == [0, 1] and table["sameStepBudget"] and table["stepBudget"] == 8
    variants = {v["name"]: v for v in table["variants"]}
    assert variants["single-task"]["steps"] == [20]
    assert variants["single-task"]["trainSeconds"]["mean"] == 2.0
    recipe = variants["recipe"]
    assert recipe["tasks"]["intent"]["ratio"]["values"] == pytest.approx([1.0, 0.8 / 0.6])
    assert recipe["tasks"]["intent"]["qualifiedSeeds"] == 2
    assert recipe["tasks"]["sentiment"]["ratio"]["mean"] == pytest.approx(0.8)
    assert recipe["qualified"]["values"] == [1, 1]
    assert recipe["meanScore"]["mean"] == pytest.approx(0.6)
    assert recipe["trainSeconds"]["mean"] == 4.0  # both stages
    proportional = variants["mtl-proportional"]
    assert proportional["qualified"]["values"] == [1, 1]  # sentiment 0.5 >= 0.99 x 0.5
    assert proportional["tasks"]["intent"]["ratio"]["std"] > 0
    text = markdown(table, ["ratios.png"])
    assert "| recipe | - | - | 2 | 0.600 ± 0.000 | 1.0 ± 0.0 of 2 | 8 |" in text
    assert "every multi-task variant trains the same 8 optimizer steps" in text

    # A variant that trained a different number of steps is called out, not hidden.
    runs.append(_fake_run(tmp_path / "0-t", 0, "mtl-temperature", {"intent": 0.5}, [9], 1.0))
    runs.append(_fake_run(tmp_path / "1-t", 1, "mtl-temperature", {"intent": 0.5}, [9], 1.0))
    table = ablation_table("demo", "model.yaml", spec, runs)
    assert not table["sameStepBudget"] and table["stepBudget"] is None
    assert "step counts DIFFER" in markdown(table, [])


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_reduced_ablation_end_to_end(tmp_path):
    """2 tasks, a few steps, 1 seed: the table's structure and one step budget for all."""
    write_intent_and_mood(tmp_path, intents=60, moods=20)
    spec = {
        "apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
        "metadata": {"name": "reduced"},
        "spec": {
            "baseModel": {"path": "model"},
            "tasks": [
                {"name": "intent", "type": "classification", "instruction": "Intent?",
                 "data": {"train": "intent.jsonl"}},
                {"name": "mood", "type": "classification", "instruction": "Mood?",
                 "data": {"train": "mood.jsonl"}},
            ],
            "recipe": {"highResourceThreshold": 40, "stage1": {"epochs": 0.5},
                       "stage2": {"epochs": 1, "temperature": 2, "datasetSizeLimit": 30}},
            "training": {"method": "full", "learningRate": 3e-3, "batchSize": 8,
                         "maxSeqLength": 64},
        },
    }
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(spec))
    command = [sys.executable, "-m", "multitask_operator.cli", "ablate",
               str(tmp_path / "model.yaml"), "--seeds", "1", "--workspace", str(tmp_path / "ws")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env,
                          cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = tmp_path / "ws" / "ablation"
    table = json.loads((folder / "ablation.json").read_text())
    names = [v["name"] for v in table["variants"]]
    assert names == ["single-task", "mtl-proportional", "mtl-temperature", "recipe"]
    # recipe: stage 1 ceil(0.5 x 54 / 8) = 4, stage 2 ceil((30 + 18) / 8) = 6
    assert table["sameStepBudget"] and table["stepBudget"] == 10
    for v in table["variants"][1:]:
        assert v["steps"] == [10], v["name"]
        assert sum(s["steps"] for s in v["perSeed"][0]["stages"]) == 10, v["name"]
        assert v["trainSeconds"]["mean"] > 0
        for task in ("intent", "mood"):
            t = v["tasks"][task]
            assert t["served"] and 0 <= t["score"]["mean"] <= 1
            ratio = t["ratio"]["mean"]
            single = table["variants"][0]["tasks"][task]["score"]["mean"]
            assert ratio is None or ratio == pytest.approx(t["score"]["mean"] / single)
    assert [len(s["stages"]) for s in table["variants"][3]["perSeed"]] == [2]  # recipe: 2 stages
    assert "| recipe | 2 | 30 | 2 |" in (folder / "ablation.md").read_text()
    assert "| recipe |" in done.stdout
    assert (folder / "ratios.png").read_bytes().startswith(PNG_MAGIC)

    # A rerun resumes: every training and evaluation step is found finished.
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env,
                           cwd=REPO, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already finished") == 4 + 2 + 2 + 3  # stages and evaluates
    assert json.loads((folder / "ablation.json").read_text())["stepBudget"] == 10

    # The sweep adds recipes that differ in stage 2 only: their stage 1 is the recipe's, copied.
    swept = subprocess.run([*command, "--sweep", "--sweep-k", "30"], capture_output=True,
                           text=True, timeout=600, env=env, cwd=REPO, check=False)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert swept.stdout.count("the same training as recipe's: reused") == 2, swept.stdout
    runs = tmp_path / "ws" / "ablation" / "runs" / "seed-0"
    recipe_weights = (runs / "recipe" / "stages" / "stage1" / "final" / "model.safetensors")
    for name in ("recipe-t1.43-k30", "recipe-t3.33-k30"):
        copied = runs / name / "stages" / "stage1" / "final" / "model.safetensors"
        assert copied.read_bytes() == recipe_weights.read_bytes(), name
        assert (runs / name / "stages" / "stage2" / "final").is_dir(), name
    table = json.loads((folder / "ablation.json").read_text())
    assert {v["name"]: v["steps"] for v in table["variants"]}["recipe-t3.33-k30"] == [10]


def test_cli_refuses_bad_options(tmp_path):
    done = subprocess.run([sys.executable, "-m", "multitask_operator.cli", "ablate",
                           str(EXAMPLES / "local" / "model.yaml"), "--variants", "mtl-uniform",
                           "--workspace", str(tmp_path / "ws")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "--variants: mtl-uniform is not a variant" in done.stderr


def _workspace(root: Path, variant, data: bytes = b'{"input": "x", "output": "y"}\n'):
    """A prepared workspace of `variant` as the trainer would leave it (plan, spec, splits)."""
    from multitask_operator.workspace import Workspace, write_json_atomic

    ws = Workspace(root)
    write_json_atomic(ws.plan_file, variant.plan.model_dump(mode="json", by_alias=True))
    write_json_atomic(ws.spec_file, variant.spec.model_dump(mode="json", by_alias=True))
    for task in variant.spec.tasks:
        ws.train_file(task.name).parent.mkdir(parents=True, exist_ok=True)
        ws.train_file(task.name).write_bytes(data)
    return ws


def _train(ws, stage: str, weights: bytes, seconds: float) -> None:
    from multitask_operator.workspace import publish, write_json_atomic

    with publish(ws.final_dir(stage), {"stage": stage}) as scratch:
        (scratch / "model.safetensors").write_bytes(weights)
    ws.checkpoints_dir(stage).mkdir(parents=True)
    ws.progress_file(stage).write_text('{"step": 1}\n')
    times = ws.root / "steps.json"
    write_json_atomic(times, {**(json.loads(times.read_text()) if times.is_file() else {}),
                              stage: seconds})


def test_a_swept_recipe_reuses_the_recipes_stage_1_and_nothing_else(tmp_path):
    from multitask_operator.local.reuse import reuse_stage, stage_key

    variants = _variants(sweep=True)
    recipe = _workspace(tmp_path / "recipe", variants["recipe"])
    _train(recipe, "stage1", b"stage one", 12.5)
    _train(recipe, "stage2", b"stage two", 30.0)
    swept_name = next(n for n in variants if n.startswith("recipe-t"))
    swept = _workspace(tmp_path / "swept", variants[swept_name])

    assert reuse_stage(swept, "stage1", [recipe]) == recipe.root
    assert swept.stage_done("stage1")
    assert (swept.final_dir("stage1") / "model.safetensors").read_bytes() == b"stage one"
    assert not swept.checkpoints_dir("stage1").exists()  # checkpoints stay behind
    assert json.loads((swept.root / "steps.json").read_text()) == {"stage1": 12.5}
    # Stage 2 mixes differently: it trains. A finished stage is never replaced.
    assert stage_key(swept, "stage2") != stage_key(recipe, "stage2")
    assert reuse_stage(swept, "stage2", [recipe]) is None and not swept.stage_done("stage2")
    assert reuse_stage(swept, "stage1", [recipe]) is None

    # Other training settings, other data, or another seed: stage 1 trains too.
    spec = variants[swept_name].spec
    other_lr = spec.model_copy(update={"training": spec.training.model_copy(
        update={"learning_rate": spec.training.effective_learning_rate * 2})})
    changed = [
        _workspace(tmp_path / "lr", dataclasses.replace(variants[swept_name], spec=other_lr)),
        _workspace(tmp_path / "data", variants[swept_name], data=b'{"input": "z"}\n'),
        _workspace(tmp_path / "seed", _variants(sweep=True, seed=1)[swept_name]),
    ]
    for ws in changed:
        assert reuse_stage(ws, "stage1", [recipe]) is None, ws.root
        assert not ws.stage_done("stage1")
