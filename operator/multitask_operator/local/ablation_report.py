"""The ablation's table: WORKSPACE/ablation/{ablation.json, ablation.md, ratios.png}.

Per variant and seed, every task's score comes from that run's eval/results.json and its ratio
is score / the same seed's single-task score; a task qualifies when score >= qualifyThreshold x
single-task score (the trainer's rule). Across seeds: mean and sample standard deviation.
A task the recipe filters out is not served by its unified model: no score, not qualified.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..api.results import EvalResults
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from ..planner.ablation import SINGLE_TASK, training_steps
from ..workspace import write_json_atomic
from .records import RunRecord


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (0 for one value) of the seeds' values."""
    if not values:
        return {"mean": None, "std": None, "values": []}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "values": list(values)}


def read_times(root: Path) -> dict[str, float]:
    """steps.json of a run: wall seconds per step (prepare, STAGE, evaluate)."""
    times_file = root / "steps.json"
    return json.loads(times_file.read_text()) if times_file.is_file() else {}


def record_time(root: Path, step: str, seconds: float) -> None:
    write_json_atomic(root / "steps.json", {**read_times(root), step: seconds})


def _read_run(run: RunRecord) -> dict[str, Any]:
    plan = Plan.model_validate(json.loads((run.root / "plan.json").read_text()))
    results = EvalResults.model_validate(
        json.loads((run.root / "eval" / "results.json").read_text()))
    times = read_times(run.root)
    stages = [s for s in plan.stages if s.kind != "baseline"]
    return {
        "scores": {t.name: t.score for t in results.tasks if t.score is not None},
        "stages": [{"name": s.name, "steps": s.steps, "tasks": s.tasks,
                    "weights": {k: round(v, 4) for k, v in s.weights.items()}} for s in stages],
        "steps": training_steps(plan),
        "trainSeconds": sum(times.get(s.name, 0.0) for s in stages),
    }


def _seed_rows(runs: list[RunRecord]) -> dict[str, dict[int, dict[str, Any]]]:
    """variant -> seed -> {scores, steps, trainSeconds, stages}; single-task runs merged."""
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for run in runs:
        facts = _read_run(run)
        row = rows.setdefault(run.variant, {}).setdefault(
            run.seed, {"scores": {}, "steps": 0, "trainSeconds": 0.0, "stages": []})
        row["scores"].update(facts["scores"])
        row["steps"] += facts["steps"]
        row["trainSeconds"] += facts["trainSeconds"]
        row["stages"] += [{**s, "task": run.task} if run.task else s for s in facts["stages"]]
        row["temperature"], row["limit"] = run.temperature, run.limit
    return rows


def ablation_table(name: str, file: str, spec: MultiTaskModelSpec,
                   runs: list[RunRecord]) -> dict[str, Any]:
    threshold = spec.recipe.qualify_threshold
    rows = _seed_rows(runs)
    single = rows[SINGLE_TASK]
    seeds = sorted(single)
    tasks = [t.name for t in spec.tasks]
    variants = []
    for variant, by_seed in rows.items():
        per_seed = []
        for seed in seeds:
            row = by_seed[seed]
            ratios, qualified = {}, []
            for task, score in row["scores"].items():
                base = single[seed]["scores"][task]
                ratios[task] = score / base if base > 0 else None
                if score >= threshold * base:
                    qualified.append(task)
            served = list(row["scores"])
            per_seed.append({
                "seed": seed, "scores": row["scores"], "ratios": ratios, "qualified": qualified,
                "meanScore": statistics.fmean(row["scores"].values()) if served else None,
                "steps": row["steps"], "trainSeconds": round(row["trainSeconds"], 2),
                "stages": row["stages"]})
        first = by_seed[seeds[0]]
        per_task: dict[str, dict[str, Any]] = {}
        for task in tasks:
            served = [s for s in per_seed if task in s["scores"]]
            per_task[task] = {
                "served": bool(served),
                "score": spread([s["scores"][task] for s in served]),
                "ratio": spread([s["ratios"][task] for s in served
                                 if s["ratios"][task] is not None]),
                "qualifiedSeeds": sum(task in s["qualified"] for s in per_seed),
            }
        variants.append({
            "name": variant,
            "temperature": first["temperature"], "datasetSizeLimit": first["limit"],
            "tasksServed": sum(t["served"] for t in per_task.values()),
            "meanScore": spread([s["meanScore"] for s in per_seed if s["meanScore"] is not None]),
            "qualified": spread([len(s["qualified"]) for s in per_seed]),
            "steps": sorted({s["steps"] for s in per_seed}),
            "trainSeconds": spread([s["trainSeconds"] for s in per_seed]),
            "tasks": per_task,
            "perSeed": per_seed,
        })
    multi = [v for v in variants if v["name"] != SINGLE_TASK]
    budgets = sorted({steps for v in multi for steps in v["steps"]})
    return {
        "model": name, "file": file, "seeds": seeds, "qualifyThreshold": threshold,
        "tasks": [{"name": t.name, "type": str(t.type), "metric": t.effective_metric}
                  for t in spec.tasks],
        "stepBudget": budgets[0] if len(budgets) == 1 else None,
        "sameStepBudget": len(budgets) == 1,
        "variants": variants,
    }


def _pm(value: dict[str, Any], digits: int = 3, seeds: int = 1) -> str:
    if value["mean"] is None:
        return "-"
    text = f"{value['mean']:.{digits}f}"
    return text + (f" ± {value['std']:.{digits}f}" if seeds > 1 else "")


def markdown(table: dict[str, Any], plots: list[str]) -> str:
    seeds, threshold = table["seeds"], table["qualifyThreshold"]
    n, count = len(table["tasks"]), len(seeds)
    budget = (f"every multi-task variant trains the same {table['stepBudget']} optimizer steps"
              if table["sameStepBudget"] else "the multi-task variants' step counts DIFFER")
    lines = [
        f"# Ablation: {table['model']}", "",
        f"`{table['file']}`, seeds {', '.join(map(str, seeds))}"
        + (" (mean ± sample standard deviation over seeds)" if count > 1 else "")
        + f"; {budget}. A task qualifies when its score >= {threshold} x its single-task "
        "score in the same seed; mean score is over the tasks the variant's unified model "
        "serves.", "",
        "| variant | tau | K | tasks served | mean score | qualified | steps | train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v in table["variants"]:
        single = v["name"] == SINGLE_TASK
        qualified = (f"{n} of {n} (reference)" if single
                     else f"{_pm(v['qualified'], 1, count)} of {n}")
        tau = "-" if v["temperature"] is None else f"{v['temperature']:g}"
        limit = "-" if v["datasetSizeLimit"] is None else str(v["datasetSizeLimit"])
        steps = "/".join(map(str, v["steps"])) + (" (sum over tasks)" if single else "")
        lines.append(f"| {v['name']} | {tau} | {limit} | {v['tasksServed']} | "
                     f"{_pm(v['meanScore'], 3, count)} | {qualified} | {steps} | "
                     f"{_pm(v['trainSeconds'], 0, count)} |")
    names = [v["name"] for v in table["variants"] if v["name"] != SINGLE_TASK]
    single = next(v for v in table["variants"] if v["name"] == SINGLE_TASK)
    lines += ["", "Per task: the single-task score, then each variant's score / single-task "
              f"score (qualified in k of {count} seeds; `-`: not served, the task was filtered "
              "out; `base 0`: the single-task score is 0, so any score qualifies).", "",
              "| task | metric | single-task | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for task in table["tasks"]:
        cells = []
        for v in table["variants"]:
            if v["name"] == SINGLE_TASK:
                continue
            t = v["tasks"][task["name"]]
            ratio = _pm(t["ratio"], 2, count) if t["ratio"]["mean"] is not None else "base 0"
            cells.append(f"{ratio} ({t['qualifiedSeeds']}/{count})" if t["served"] else "-")
        base = single["tasks"][task["name"]]["score"]
        lines.append(f"| {task['name']} | {task['metric']} | {_pm(base, 3, count)} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Stages of the first seed:", ""]
    for v in table["variants"]:
        if v["name"] == SINGLE_TASK:
            continue
        stages = "; ".join(
            f"{s['name']} {s['steps']} steps ("
            + ", ".join(f"{k} {w:.2f}" for k, w in s["weights"].items()) + ")"
            for s in v["perSeed"][0]["stages"])
        lines.append(f"- **{v['name']}**: {stages}")
    lines += [""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_ratio_plot(table: dict[str, Any], path: Path) -> None:
    """Per task, one bar per variant: mean ratio to single-task (error bar: std over seeds),
    with the qualification line; no bar where the variant does not serve the task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v in table["variants"] if v["name"] != SINGLE_TASK]
    tasks = [t["name"] for t in table["tasks"]]
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(tasks) + 4), 4))
    # Ratios far above 1 (a weak single-task reference) would flatten the rest: bars above
    # CLIP are cut there and labelled with their value.
    clip, top = 2.5, 1.2
    for i, v in enumerate(variants):
        xs, ys, errs = [], [], []
        for j, task in enumerate(tasks):
            ratio = v["tasks"][task]["ratio"]
            if ratio["mean"] is not None:
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(min(ratio["mean"], clip))
                errs.append(ratio["std"] if ratio["mean"] < clip else 0)
                if ratio["mean"] > clip:
                    ax.text(xs[-1], clip, f"{ratio['mean']:.1f}", ha="center", va="bottom",
                            fontsize=7)
        top = max([top, *[min(y + e, clip) + 0.3 for y, e in zip(ys, errs, strict=True)]])
        ax.bar(xs, ys, width=width, yerr=errs, capsize=2, label=v["name"])
    ax.axhline(table["qualifyThreshold"], color="black", linestyle="dashed", linewidth=1,
               label=f"qualifies ({table['qualifyThreshold']} x single-task)")
    ax.set_xticks(range(len(tasks)), tasks, rotation=20)
    ax.set_ylabel("score / single-task score")
    ax.set_ylim(0, top)
    ax.set_title(f"Per-task ratio to single-task ({len(table['seeds'])} seed(s))")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # outside the bars
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_ablation_report(folder: Path, name: str, file: str, spec: MultiTaskModelSpec,
                          runs: list[RunRecord]) -> dict[str, Any]:
    table = ablation_table(name, file, spec, runs)
    folder.mkdir(parents=True, exist_ok=True)
    write_ratio_plot(table, folder / "ratios.png")
    write_json_atomic(folder / "ablation.json", table)
    (folder / "ablation.md").write_text(markdown(table, ["ratios.png"]), encoding="utf-8")
    return table
