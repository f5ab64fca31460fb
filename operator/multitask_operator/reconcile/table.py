"""`status.tasks`: one row per task, filled in as the steps report.

    name  group  included  reason  highResource  examples  score  baseline  qualified  servedBy
    cutoverBlocked (only when the task's Service could not be taken over, and why)

Before prepare a row has only the name; after prepare the plan's grouping; after evaluate the
scores and qualification; servedBy says where the task's traffic goes now.
"""

from __future__ import annotations

from typing import Any

from ..api.results import EvaluateResult, StepSummary
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan

UNIFIED = "unified"
OWN_SERVICE = "own service"
NONE = "none"  # no service of its own was named and the unified model does not serve it


def evaluation(
    summary: StepSummary | None, spec: MultiTaskModelSpec | None = None,
) -> tuple[dict[str, float], list[str], dict[str, float | None]]:
    """(scores, qualified task names, trained baselines) from the evaluate step's result. With
    `spec`, qualification is decided here, by the spec's gate (score >= recipe.qualifyThreshold
    x baseline, the baseline being baseline.score or the trained one), so that changing the
    gate takes effect without training or evaluating again; without, it is the trainer's."""
    if summary is None:
        return {}, [], {}
    result = summary.result(EvaluateResult)
    scores = {k: float(v) for k, v in result.scores.items() if v is not None}
    trained = dict(result.baselines)
    if spec is None:
        return scores, list(result.qualified), trained
    threshold = spec.recipe.qualify_threshold
    qualified = []
    for task in spec.tasks:
        score = scores.get(task.name)
        baseline = task.baseline.score if task.baseline.score is not None else trained.get(
            task.name)
        if score is None or baseline is None:
            continue
        if spec.recipe.qualify_rule == "nonInferiority":
            found = result.intervals.get(task.name) or {}
            if task.baseline.score is not None and found.get("scoreInterval"):
                margin = found["scoreInterval"][0] - threshold * baseline  # a number: redo
            else:
                margin = found.get("margin")  # paired: evaluate's, at this threshold
            if margin is not None and margin >= 0:
                qualified.append(task.name)
        elif score >= threshold * baseline:
            qualified.append(task.name)
    return scores, qualified, trained


def served_by(spec: MultiTaskModelSpec, name: str, cut_over: set[str], deployed: bool,
              qualified: list[str]) -> str:
    task = spec.task(name)
    if name in cut_over or (deployed and name in qualified and task.service is None):
        return UNIFIED
    return OWN_SERVICE if task.service else NONE


def _confidence(evaluate: StepSummary, task: str, baseline: float | None) -> dict[str, Any]:
    """The evaluation's intervals and majority score of a task, and the flag for a baseline
    that does not beat the majority class."""
    found = evaluate.result(EvaluateResult).intervals.get(task) or {}
    keys = ("scoreInterval", "baselineInterval", "majority", "margin")
    out: dict[str, Any] = {k: found[k] for k in keys if k in found}
    if "majority" in out and baseline is not None and baseline <= out["majority"]:
        out["baselineNotAboveMajority"] = True
    return out


def task_rows(
    spec: MultiTaskModelSpec,
    plan: Plan | None,
    evaluate: StepSummary | None,
    cut_over: set[str],
    deployed: bool,
    blocked: dict[str, str] | None = None,
    waiting: set[str] | None = None,
) -> list[dict[str, Any]]:
    scores, qualified, trained = evaluation(evaluate, spec)
    planned = {t.name: t for t in plan.tasks} if plan else {}
    rows = []
    for task in spec.tasks:
        row: dict[str, Any] = {"name": task.name}
        if task.name in planned:
            p = planned[task.name]
            row.update(group=p.group, included=p.included, reason=p.reason,
                       highResource=p.high_resource, examples=p.examples)
        baseline = task.baseline.score if task.baseline.score is not None else trained.get(
            task.name)
        if baseline is not None:
            row["baseline"] = baseline
        if evaluate is not None:
            if task.name in scores:
                row["score"] = round(scores[task.name], 4)
            row["qualified"] = task.name in qualified
            row.update(_confidence(evaluate, task.name, baseline))
            if spec.recipe.qualify_rule == "nonInferiority" and task.baseline.score is not None \
                    and row.get("scoreInterval"):  # against the spec's number, as decided
                row["margin"] = round(row["scoreInterval"][0]
                                      - spec.recipe.qualify_threshold * task.baseline.score, 4)
        row["servedBy"] = served_by(spec, task.name, cut_over, deployed, qualified)
        if blocked and task.name in blocked:
            row["cutoverBlocked"] = blocked[task.name]
        if waiting and task.name in waiting:
            row["awaitingApproval"] = True
        rows.append(row)
    return rows
