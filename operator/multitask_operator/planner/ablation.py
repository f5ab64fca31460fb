"""The variants `mtm ablate` compares, each derived from the user's spec (pure: no I/O).

    single-task       one spec per task: the task alone, trained as the recipe's baseline is
                      (recipe.stage2.epochs, plus stage1.epochs for a high-resource task)
    mtl-proportional  every task in one stage, examples-proportional: p_i = n_i / sum_j n_j
    mtl-temperature   every task in one stage, temperature-scaled with the spec's tau and K
    recipe            the spec as written: task filtering, stage 1, stage 2
    recipe-tT-kK      (sweep) the recipe with stage 2's tau and K replaced

The budget is the recipe's total optimizer steps (stage 1 + stage 2). Every multi-task variant
trains exactly that many: a one-stage variant's stage2.epochs is solved for it, a swept recipe's
stage 2 gets what its stage 1 leaves. `build_plan` then checks each derived plan, so a budget
that cannot be met is an error here, before anything trains.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from .mixture import capped_size
from .plan import build_plan, stage_steps

SINGLE_TASK = "single-task"
MULTI_TASK_VARIANTS = ("mtl-proportional", "mtl-temperature", "recipe")
SWEEP_TEMPERATURES = (1.43, 2.0, 3.33)  # the paper's values
MAX_EPOCHS = 100  # spec.recipe.stage2.epochs accepts at most this


class AblationError(ValueError):
    """The ablation cannot be set up; one sentence naming the field and what is accepted."""


@dataclass(frozen=True)
class Variant:
    name: str  # single-task, mtl-proportional, mtl-temperature, recipe, recipe-t2-k1000
    spec: MultiTaskModelSpec
    plan: Plan
    task: str | None = None  # the task of a single-task run
    temperature: float | None = None  # stage 2's tau (None for single-task)
    limit: int | None = None  # stage 2's K

    @property
    def steps(self) -> int:
        return training_steps(self.plan)

    @property
    def run_name(self) -> str:
        """The folder of the run: single-task/TASK or the variant's name."""
        return f"{SINGLE_TASK}/{self.task}" if self.task else self.name


def training_steps(plan: Plan) -> int:
    """Optimizer steps of a plan's multi-task stages (baselines are not part of a variant)."""
    return sum(s.steps for s in plan.stages if s.kind != "baseline")


def _wire(spec: MultiTaskModelSpec, seed: int) -> dict[str, Any]:
    data = spec.to_wire()
    data["training"]["seed"] = seed
    data["recipe"]["trainBaselines"] = False  # baselines are the single-task runs, shared
    return data


def seeded_spec(spec: MultiTaskModelSpec, seed: int) -> MultiTaskModelSpec:
    """The recipe's spec, which needs no counts: the spec with this seed, baselines off."""
    return MultiTaskModelSpec.model_validate(_wire(spec, seed))


def _one_group(data: dict[str, Any]) -> None:
    """Every task in one group, none in stage 1: one stage over all tasks."""
    data["recipe"]["taskFiltering"] = "none"
    data["recipe"]["keep"] = "largest"
    for task in data["tasks"]:
        task["highResource"] = False


def _epochs_for(variant: str, steps: int, epoch_examples: int, batch: int) -> float:
    """stage2.epochs so that ceil(epochs x epoch_examples / batch) == steps."""
    epochs = steps * batch / epoch_examples
    if epochs > MAX_EPOCHS:
        raise AblationError(
            f"variant {variant}: matching the recipe's {steps} training steps needs "
            f"recipe.stage2.epochs {epochs:.1f}, but it accepts at most {MAX_EPOCHS}; lower "
            "recipe.stage1.epochs or recipe.stage2.epochs, or set training.maxSteps")
    return epochs


def _checked(name: str, data: dict[str, Any], counts: Mapping[str, int],
             labels: Mapping[str, Sequence[str]] | None, budget: int | None,
             **info: Any) -> Variant:
    spec = MultiTaskModelSpec.model_validate(data)
    plan = build_plan(spec, counts, labels)
    variant = Variant(name, spec, plan, **info)
    if budget is not None and variant.steps != budget:  # a bug in the arithmetic above
        raise AblationError(f"variant {name}: planned {variant.steps} training steps, "
                            f"not the recipe's {budget}")
    return variant


def recipe_variant(spec: MultiTaskModelSpec, counts: Mapping[str, int],
                   labels: Mapping[str, Sequence[str]] | None, seed: int) -> Variant:
    """The spec as written (with this seed); its steps are every variant's budget."""
    stage2 = spec.recipe.stage2
    return _checked("recipe", _wire(spec, seed), counts, labels, None,
                    temperature=stage2.temperature, limit=stage2.dataset_size_limit)


def one_stage_variant(spec: MultiTaskModelSpec, counts: Mapping[str, int],
                      labels: Mapping[str, Sequence[str]] | None, seed: int, name: str,
                      budget: int) -> Variant:
    """mtl-proportional (tau 1, no size limit) or mtl-temperature (the spec's tau and K)."""
    if name == "mtl-proportional":
        temperature, limit = 1.0, max(counts[t.name] for t in spec.tasks)  # K >= every n_i
    else:
        temperature = spec.recipe.stage2.temperature
        limit = spec.recipe.stage2.dataset_size_limit
    data = _wire(spec, seed)
    _one_group(data)
    examples = capped_size({t.name: counts[t.name] for t in spec.tasks}, limit)
    data["recipe"]["stage2"] = {
        "epochs": _epochs_for(name, budget, examples, spec.training.batch_size),
        "temperature": temperature, "datasetSizeLimit": limit}
    data["training"].pop("maxSteps", None)  # the budget, not the per-stage cap, bounds it
    return _checked(name, data, counts, labels, budget, temperature=temperature, limit=limit)


def swept_variant(recipe: Variant, counts: Mapping[str, int],
                  labels: Mapping[str, Sequence[str]] | None, temperature: float,
                  limit: int) -> Variant:
    """The recipe with stage 2's tau and K replaced; stage 2 gets the steps stage 1 leaves."""
    name = f"recipe-t{temperature:g}-k{limit}"
    stage2 = [s for s in recipe.plan.stages if s.kind == "stage2"]
    if len(stage2) != 1:
        raise AblationError(
            f"--sweep needs one unified model, but recipe.keep {recipe.spec.recipe.keep} makes "
            f"{len(stage2)} (one per group); accepted: keep largest, classification or generation")
    steps = stage2[0].steps
    data = recipe.spec.to_wire()
    examples = capped_size({t: counts[t] for t in stage2[0].tasks}, limit)
    data["recipe"]["stage2"] = {
        "epochs": _epochs_for(name, steps, examples, recipe.spec.training.batch_size),
        "temperature": temperature, "datasetSizeLimit": limit}
    return _checked(name, data, counts, labels, recipe.steps, temperature=temperature,
                    limit=limit)


def single_task_variant(spec: MultiTaskModelSpec, counts: Mapping[str, int],
                        labels: Mapping[str, Sequence[str]] | None, seed: int,
                        task: str) -> Variant:
    """One task alone, as many epochs as the planner gives its baseline stage."""
    definition = spec.task(task)
    high = (definition.high_resource if definition.high_resource is not None
            else counts[task] >= spec.recipe.high_resource_threshold)
    recipe = spec.recipe
    epochs = recipe.stage2.epochs + (recipe.stage1.epochs if high else 0)
    data = _wire(spec, seed)
    data["tasks"] = [t for t in data["tasks"] if t["name"] == task]
    _one_group(data)
    data["recipe"]["stage2"] = {"epochs": epochs, "temperature": 1.0,
                                "datasetSizeLimit": counts[task]}
    expected = stage_steps(epochs, counts[task], spec.training.batch_size,
                           spec.training.max_steps)
    return _checked(SINGLE_TASK, data, {task: counts[task]}, labels, expected, task=task)


def sweep_limits(recipe: Variant, counts: Mapping[str, int]) -> list[int]:
    """Default K values of the sweep: the spec's K, the median size of the unified model's
    tasks, and no limit (the largest size); a K at or above the largest size means no limit."""
    stage2 = next(s for s in recipe.plan.stages if s.kind == "stage2")
    sizes = [counts[t] for t in stage2.tasks]
    largest = max(sizes)
    candidates = [recipe.limit or largest, math.ceil(statistics.median(sizes)), largest]
    return sorted({min(k, largest) for k in candidates})


def check_variant_names(variants: Sequence[str]) -> None:
    if not variants:
        raise AblationError("--variants: empty; accepted: one or more of "
                            f"{', '.join(MULTI_TASK_VARIANTS)}, comma-separated")
    unknown = [v for v in variants if v not in MULTI_TASK_VARIANTS]
    if unknown:
        raise AblationError(f"--variants: {', '.join(unknown)} is not a variant; accepted: "
                            f"{', '.join(MULTI_TASK_VARIANTS)}")


def build_variants(spec: MultiTaskModelSpec, counts: Mapping[str, int],
                   labels: Mapping[str, Sequence[str]] | None, seed: int,
                   variants: Sequence[str] = MULTI_TASK_VARIANTS, sweep: bool = False,
                   limits: Sequence[int] | None = None) -> list[Variant]:
    """The single-task runs, then the chosen multi-task variants, all for one seed."""
    check_variant_names(variants)
    recipe = recipe_variant(spec, counts, labels, seed)
    out = [single_task_variant(spec, counts, labels, seed, t.name) for t in spec.tasks]
    for name in MULTI_TASK_VARIANTS:  # a fixed order, whatever order they were given in
        if name not in variants:
            continue
        out.append(recipe if name == "recipe" else
                   one_stage_variant(spec, counts, labels, seed, name, recipe.steps))
    if sweep:
        stage2 = next(s for s in recipe.plan.stages if s.kind == "stage2")
        largest = max(counts[t] for t in stage2.tasks)  # any K at or above it means no limit
        same = (recipe.temperature, min(recipe.limit or largest, largest))
        for limit in limits or sweep_limits(recipe, counts):
            if limit < 1:
                raise AblationError(f"--sweep-k: {limit} is not a dataset-size limit; "
                                    "accepted: integers >= 1")
            for tau in SWEEP_TEMPERATURES:
                if (tau, min(limit, largest)) == same and "recipe" in variants:
                    continue  # that is the recipe itself
                out.append(swept_variant(recipe, counts, labels, tau, limit))
    return out
