"""The training steps of one revision, in order, and what their finished Jobs reported.

    prepare -> stage1 (when planned) -> stage2 -> baseline-TASK (trainBaselines) -> evaluate
    -> export

The stages are only known once prepare has counted the data: its termination message carries
the per-task counts (and inferred labels), from which `build_plan` gives the same plan the
trainer wrote to plan.json. Nothing here is remembered between reconciles: a restarted operator
walks the same Jobs and reaches the same place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError

from ..api.common import Phase
from ..api.results import PrepareResult, ProgressEvent, StepSummary
from ..api.serving import PUBLISH_PREFIX
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from ..planner import PlanError, build_plan
from .observed import FAILED, SUCCEEDED, JobState

PREPARE, EVALUATE, EXPORT = "prepare", "evaluate", "export"


def phase_of(step: str) -> Phase:
    if step == PREPARE:
        return Phase.PREPARING
    if step.startswith("stage1"):
        return Phase.TRAINING_STAGE1
    if step == EVALUATE:
        return Phase.EVALUATING
    if step == EXPORT or step.startswith(PUBLISH_PREFIX):
        return Phase.EXPORTING
    return Phase.TRAINING_STAGE2  # stage2, stage2-GROUP and the single-task baselines after it


@dataclass
class Walk:
    """How far the revision got: finished results, and the step to run or wait for next."""

    plan: Plan | None = None
    labels: dict[str, list[str]] = field(default_factory=dict)
    results: dict[str, StepSummary] = field(default_factory=dict)
    next_step: str | None = None  # None: every step finished
    job: JobState | None = None  # next_step's Job, if it exists
    failed: JobState | None = None
    problem: str | None = None  # a finished step whose result cannot be used

    @property
    def done(self) -> bool:
        return self.next_step is None and self.failed is None and self.problem is None


def plan_from_prepare(
    spec: MultiTaskModelSpec, summary: StepSummary
) -> tuple[Plan, dict[str, list[str]]]:
    try:
        result = summary.result(PrepareResult)
    except ValidationError as err:
        raise PlanError(f"the prepare step's result is unreadable: {err.errors()[0]['msg']}") \
            from None
    if not result.counts:
        raise PlanError(
            "the prepare step's result has no per-task counts (its termination message was "
            "cut or the trainer image is older than the operator)"
        )
    return build_plan(spec, result.counts, result.labels), result.labels


def walk(spec: MultiTaskModelSpec, jobs: list[JobState]) -> Walk:
    """`jobs`: the Jobs of the current revision, by step (a deleted failed Job is not there)."""
    by_step = {j.step: j for j in jobs}
    result = Walk()
    order = [PREPARE]
    i = 0
    while i < len(order):
        step = order[i]
        job = by_step.get(step)
        if job is None or job.phase not in (SUCCEEDED, FAILED):
            result.next_step, result.job = step, job
            return result
        if job.phase == FAILED:
            result.failed = job
            return result
        if job.summary is None or not job.summary.ok:
            result.problem = (
                f"step {step} ({job.kind} {job.name}) succeeded without a readable result: "
                f"{job.message or 'no termination message'}"
            )
            return result
        result.results[step] = job.summary
        if step == PREPARE:
            try:
                result.plan, result.labels = plan_from_prepare(spec, job.summary)
            except PlanError as err:
                result.problem = f"step prepare (Job {job.name}): {err}"
                return result
            order += [s.name for s in result.plan.stages] + [EVALUATE, EXPORT]
            if spec.serving.model_storage is not None:  # the export, copied for serving
                order.append(spec.serving.model_storage.step)
        i += 1
    return result


# evaluate and export have no optimizer steps; each counts as this share of the training steps
# in the pipeline's overall percent (prepare, before the plan exists, as 0).
SCORING_SHARE = 0.05


def overall_progress(walk: Walk, step: str, current: ProgressEvent | None) -> dict[str, float]:
    """The whole pipeline's percent (steps weighted by their planned optimizer steps) and the
    training time left (the current stage's speed applied to every step not yet trained)."""
    if walk.plan is None:
        return {"overallPercent": 0.0}
    stages = [(s.name, float(s.steps)) for s in walk.plan.stages]
    training = sum(weight for _, weight in stages) or 1.0
    weights = stages + [(EVALUATE, training * SCORING_SHARE), (EXPORT, training * SCORING_SHARE)]
    if step.startswith(PUBLISH_PREFIX):
        weights.append((step, training * SCORING_SHARE))
    total = sum(weight for _, weight in weights)
    names = [name for name, _ in weights]
    index = names.index(step) if step in names else 0
    done = sum(weight for _, weight in weights[:index])
    fraction = (current.percent / 100.0) if current is not None else 0.0
    out = {"overallPercent": round(100.0 * (done + fraction * weights[index][1]) / total, 1)}
    if current is not None and current.eta_seconds is not None and current.total_steps:
        left_here = max(current.total_steps - current.step, 0)
        if left_here:
            per_step = current.eta_seconds / left_here
            later = sum(weight for name, weight in stages[index + 1:]) if step in dict(stages) \
                else 0.0
            out["overallEtaSeconds"] = round(per_step * (left_here + later), 1)
    return out

