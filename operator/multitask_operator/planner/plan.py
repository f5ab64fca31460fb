"""The recipe's plan: from the spec and the per-task example counts, what each stage trains.

Pure: no I/O. `mtm plan`, the trainer's prepare step and the operator all call `build_plan`, so
the plan a user previews is the plan that runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan, SkippedStage, StagePlan, TaskPlan
from .filtering import group_tasks
from .mixture import capped_size, instance_balanced, temperature_scaled


class PlanError(ValueError):
    pass


def eval_split_size(total: int, fraction: float) -> int:
    """Examples held out for evaluation when a task has no eval file: round(total x fraction),
    at least 1 and leaving at least 1 for training. Tasks with fewer than 2 examples get none."""
    if total < 2:
        return 0
    return min(total - 1, max(1, math.floor(total * fraction + 0.5)))


def stage_steps(epochs: float, epoch_examples: int, batch_size: int, max_steps: int | None) -> int:
    """ceil(epochs x examples / batch), at least 1, capped by training.maxSteps."""
    steps = max(1, math.ceil(epochs * epoch_examples / batch_size - 1e-9))
    return min(steps, max_steps) if max_steps is not None else steps


def _stage(
    name: str,
    kind: str,
    group: str | None,
    weights: dict[str, float],
    counts: Mapping[str, int],
    epochs: float,
    epoch_examples: int,
    spec: MultiTaskModelSpec,
    init_from: str | None,
) -> StagePlan:
    batch = spec.training.batch_size
    steps = stage_steps(epochs, epoch_examples, batch, spec.training.max_steps)
    return StagePlan(
        name=name,
        kind=kind,
        group=group,
        tasks=list(weights),
        weights=weights,
        epochs=epochs,
        epoch_examples=epoch_examples,
        steps=steps,
        expected_passes={t: steps * batch * w / counts[t] for t, w in weights.items()},
        init_from=init_from,
    )


def build_plan(
    spec: MultiTaskModelSpec,
    counts: Mapping[str, int],
    labels: Mapping[str, Sequence[str]] | None = None,
) -> Plan:
    """Plan the recipe. `counts`: training examples per task after the eval split; `labels`:
    labels inferred from the data for classification tasks that do not declare them."""
    missing = [t.name for t in spec.tasks if t.name not in counts]
    if missing:
        raise PlanError(f"no example count for task(s): {', '.join(missing)}")
    empty = [t.name for t in spec.tasks if counts[t.name] <= 0]
    if empty:
        raise PlanError(f"task(s) with no training examples: {', '.join(empty)}")

    recipe = spec.recipe
    grouping = group_tasks(spec, counts, labels)
    threshold = recipe.high_resource_threshold

    def high_resource(name: str) -> bool:
        override = spec.task(name).high_resource
        return override if override is not None else counts[name] >= threshold

    tasks: list[TaskPlan] = []
    for task in spec.tasks:
        included = grouping.group_of[task.name] in grouping.kept
        reason = grouping.reasons[task.name]
        if included and task.baseline.score is None and not recipe.train_baselines:
            reason += (
                "; it has no baseline.score and recipe.trainBaselines is off, so it cannot "
                "qualify for cutover"
            )
        tasks.append(
            TaskPlan(
                name=task.name,
                type=str(task.type),
                taxonomy=grouping.taxonomy_of[task.name],
                group=grouping.group_of[task.name],
                included=included,
                reason=reason,
                high_resource=high_resource(task.name),
                examples=counts[task.name],
            )
        )

    stages: list[StagePlan] = []
    skipped: list[SkippedStage] = []
    for group in grouping.kept:
        suffix = "" if len(grouping.kept) == 1 else f"-{group}"
        members = [t.name for t in tasks if t.included and t.group == group]
        rich = [name for name in members if high_resource(name)]
        stage1_name = None
        if rich:
            stage1_name = f"stage1{suffix}"
            sub = {name: counts[name] for name in rich}
            stages.append(
                _stage(stage1_name, "stage1", group, instance_balanced(sub), counts,
                       recipe.stage1.epochs, sum(sub.values()), spec, None)
            )
        else:
            skipped.append(
                SkippedStage(
                    name=f"stage1{suffix}",
                    reason=f"no task in group '{group}' is high-resource (none has "
                    f"{threshold} or more examples or highResource: true)",
                )
            )
        sub = {name: counts[name] for name in members}
        limit = recipe.stage2.dataset_size_limit
        stages.append(
            _stage(f"stage2{suffix}", "stage2", group,
                   temperature_scaled(sub, recipe.stage2.temperature, limit), counts,
                   recipe.stage2.epochs, capped_size(sub, limit), spec, stage1_name)
        )

    if recipe.train_baselines:
        for planned in tasks:
            if not planned.included or spec.task(planned.name).baseline.score is not None:
                continue
            # A baseline sees its task as often as a single-task model would in both stages.
            epochs = recipe.stage2.epochs + (recipe.stage1.epochs if planned.high_resource else 0)
            stages.append(
                _stage(f"baseline-{planned.name}", "baseline", None, {planned.name: 1.0}, counts,
                       epochs, counts[planned.name], spec, None)
            )

    return Plan(
        groups=grouping.kept,
        tasks=tasks,
        stages=stages,
        skipped=skipped,
        batch_size=spec.training.batch_size,
    )
