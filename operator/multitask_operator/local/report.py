"""The report of a local run: WORKSPACE/report/{results.json, report.md, *.png}.

results.json per task: included or why not, score, baseline, ratio, qualified; the plan; the
training curves' end points; serving cost before and after. report.md says the same for people
and embeds the plots (see `plots`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..api.results import EvalResults, ProgressEvent, parse_progress_line
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from ..cost import serving_cost
from ..workspace import Workspace, write_json_atomic
from .records import RunFacts


def read_curves(ws: Workspace, plan: Plan) -> dict[str, list[ProgressEvent]]:
    curves = {}
    for stage in plan.stages:
        path = ws.progress_file(stage.name)
        if not path.is_file():
            continue
        events = [parse_progress_line(line) for line in path.read_text().splitlines()]
        # A resumed stage logs some steps twice: keep the last event of each step.
        by_step = {e.step: e for e in events if e is not None}
        curves[stage.name] = [by_step[s] for s in sorted(by_step)]
    return curves


def gather(ws: Workspace, name: str) -> RunFacts:
    spec = MultiTaskModelSpec.model_validate(json.loads(ws.spec_file.read_text()))
    plan = Plan.model_validate(json.loads(ws.plan_file.read_text()))
    results = EvalResults.model_validate(json.loads(ws.eval_results_file.read_text()))
    cost = serving_cost(spec, results.qualified)
    return RunFacts(name, spec, plan, results, read_curves(ws, plan), cost)


def results_json(facts: RunFacts) -> dict[str, Any]:
    planned = {t.name: t for t in facts.plan.tasks}
    tasks = []
    for result in facts.results.tasks:
        plan_task = planned[result.name]
        tasks.append({
            "name": result.name, "type": result.type, "group": plan_task.group,
            "included": result.included,
            "reason": result.reason or plan_task.reason,
            "highResource": plan_task.high_resource, "examples": plan_task.examples,
            "metric": result.metric, "score": result.score, "baseline": result.baseline,
            "baselineSource": result.baseline_source, "ratio": result.ratio,
            "qualified": result.qualified, "scoreInterval": result.score_interval,
            "baselineInterval": result.baseline_interval, "majority": result.majority,
            "baselineNotAboveMajority": (result.majority is not None
                                         and result.baseline is not None
                                         and result.baseline <= result.majority),
        })
    training = []
    for stage in facts.plan.stages:
        events = facts.curves.get(stage.name, [])
        last = events[-1] if events else None
        training.append({
            "stage": stage.name, "steps": stage.steps,
            "finalLoss": last.loss if last else None,
            "firstLoss": events[0].loss if events else None,
            "tokensPerSecond": last.tokens_per_second if last else None,
        })
    return {
        "model": facts.name,
        "qualifyThreshold": facts.results.qualify_threshold,
        "tasks": tasks,
        "qualified": facts.results.qualified,
        "plan": facts.plan.to_wire(),
        "training": training,
        "serving": {
            "gpusBefore": facts.cost.gpus_before, "gpusAfter": facts.cost.gpus_after,
            "costReduction": round(facts.cost.reduction, 4), "costSaving": facts.cost.saving,
        },
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def qualified_cell(task: dict[str, Any]) -> str:
    """yes / no, with why the comparison says little: a baseline of 0 (any score qualifies), or
    a baseline that does not beat the majority class."""
    word = "yes" if task["qualified"] else "no"
    if task["qualified"] and task["baseline"] == 0:
        return "yes (baseline 0)"
    if task.get("baselineNotAboveMajority"):
        return f"{word} (baseline <= majority)"
    return word


def with_interval(value: float | None, interval: list[float] | None) -> str:
    """`0.850 [0.801, 0.897]`: a score and its 95% bootstrap interval."""
    text = _fmt(value)
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval and value is not None \
        else text


def markdown(data: dict[str, Any], plots: list[str]) -> str:
    lines = [f"# Multi-task run: {data['model']}", ""]
    serving = data["serving"]
    lines += [
        f"{len(data['qualified'])} of {len(data['tasks'])} tasks qualified for the unified model "
        f"(score >= {data['qualifyThreshold']} x baseline). Serving GPUs: "
        f"{serving['gpusBefore']} before, {serving['gpusAfter']} after "
        f"({serving['costSaving']} saved).", "",
        "| task | type | included | metric | score [95% CI] | baseline [95% CI] | majority "
        "| ratio | qualified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for t in data["tasks"]:
        lines.append(
            f"| {t['name']} | {t['type']} | {'yes' if t['included'] else 'no'} | {t['metric']} | "
            f"{with_interval(t['score'], t.get('scoreInterval'))} | "
            f"{with_interval(t['baseline'], t.get('baselineInterval'))} ({t['baselineSource']}) "
            f"| {_fmt(t.get('majority'))} | {_fmt(t['ratio'])} | {qualified_cell(t)} |")
    lines += ["", "Intervals: 95% bootstrap over the eval examples (the same resamples for the "
                  "score and a trained baseline). Majority: the score of always answering the "
                  "most frequent training label."]
    if any(t.get("baselineNotAboveMajority") for t in data["tasks"]):
        lines += ["", "A baseline no better than the majority class (\"baseline <= majority\") "
                      "makes the comparison meaningless: the single-task model learned nothing "
                      "the class frequencies do not give; train it longer or check its data."]
    if any(t["qualified"] and t["baseline"] == 0 for t in data["tasks"]):
        lines += ["", "A baseline of 0 qualifies any score: a task marked \"baseline 0\" is no "
                      "worse on the unified model, which says nothing about how good either is; "
                      "check its data and metric before moving it."]
    out = [t for t in data["tasks"] if not t["qualified"]]
    if out:
        lines += ["", "Not moved to the unified model:", ""]
        lines += [f"- **{t['name']}**: {t['reason']}" for t in out]
    lines += ["", "## Training", "", "| stage | steps | first loss | final loss | tokens/s |",
              "|---|---|---|---|---|"]
    for s in data["training"]:
        lines.append(f"| {s['stage']} | {s['steps']} | {_fmt(s['firstLoss'])} | "
                     f"{_fmt(s['finalLoss'])} | {_fmt(s['tokensPerSecond'], 0)} |")
    lines += ["", "## Mixtures", ""]
    for stage in data["plan"]["stages"]:
        weights = ", ".join(f"{k} {v:.3f}" for k, v in stage["weights"].items())
        lines.append(f"- {stage['name']} ({stage['steps']} steps): {weights}")
    for skipped in data["plan"].get("skipped", []):
        lines.append(f"- {skipped['name']}: skipped; {skipped['reason']}")
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(ws: Workspace, name: str) -> tuple[dict[str, Any], Path]:
    """Write WORKSPACE/report/ and return results.json's content and the folder."""
    from .plots import write_plots

    facts = gather(ws, name)
    data = results_json(facts)
    folder = ws.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    plots = write_plots(facts, folder)
    write_json_atomic(folder / "results.json", data)
    (folder / "report.md").write_text(markdown(data, plots), encoding="utf-8")
    return data, folder
