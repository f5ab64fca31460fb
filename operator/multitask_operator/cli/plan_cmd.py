"""`mtm plan FILE`: what the recipe will do with these tasks, before any GPU is spent.

    mtm plan examples/local/model.yaml
    mtm plan model.yaml --output json
    mtm plan cluster-model.yaml --examples intent=12000 --examples sentiment=800

Counts come from the local data files (after the eval split); data that is not local (pvc://,
http(s)://, s3://, hf://) needs its training-example count given with --examples.
"""

from __future__ import annotations

import json

import click

from ..api.status import Plan
from ..loader import Document, Problem, check_data, load_file
from ..planner import PlanError, build_plan


def _parse_examples(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        if not sep or not number.strip().isdigit():
            raise click.BadParameter(f"expected TASK=COUNT, got {value!r}", param_hint="--examples")
        out[name.strip()] = int(number)
    return out


def _plan_document(doc: Document, overrides: dict[str, int]) -> tuple[Plan | None, list[str]]:
    data = check_data(doc)
    problems = [str(p) for p in data.problems]
    counts = {**data.counts, **overrides}
    for i, task in enumerate(doc.model.spec.tasks):
        if task.name not in counts and task.name in data.remote:
            problems.append(
                str(Problem(str(doc.file), doc.line_of(["spec", "tasks", i, "data", "train"]),
                            f"spec.tasks[{i}].data.train",
                            f"{data.remote[task.name]} cannot be read here; give its training "
                            f"example count with --examples {task.name}=N"))
            )
    if problems:
        return None, problems
    try:
        return build_plan(doc.model.spec, counts, data.labels), []
    except PlanError as err:
        return None, [f"{doc.file}: {err}"]


def render_table(plan: Plan, title: str) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    # Piped output (CI logs, files) gets a fixed width instead of rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 140)
    stages = [s for s in plan.stages if s.kind != "baseline"]
    table = Table(title=title, title_justify="left")
    for column in ("task", "kind", "group", "included", "high-res", "examples"):
        table.add_column(column, justify="right" if column == "examples" else "left")
    for stage in stages:
        table.add_column(f"{stage.name}: p (passes)", justify="right")
    for task in plan.tasks:
        row = [task.name, task.taxonomy or task.type, task.group,
               "yes" if task.included else "no", "yes" if task.high_resource else "",
               str(task.examples)]
        for stage in stages:
            weight = stage.weights.get(task.name)
            passes = stage.expected_passes.get(task.name, 0.0)
            row.append("" if weight is None else f"{weight:.3f} ({passes:.2f})")
        table.add_row(*row)
    console.print(table)

    steps = Table(title="stages", title_justify="left")
    for column in ("stage", "tasks", "epochs", "epoch examples", "steps", "starts from"):
        steps.add_column(column)
    for stage in plan.stages:
        steps.add_row(stage.name, ", ".join(stage.tasks), f"{stage.epochs:g}",
                      str(stage.epoch_examples), str(stage.steps), stage.init_from or "base model")
    console.print(steps)
    for skipped in plan.skipped:
        console.print(f"skipped {skipped.name}: {skipped.reason}")
    for task in plan.tasks:
        if not task.included:
            console.print(f"{task.name}: {task.reason}")
        elif "cannot qualify" in task.reason:
            console.print(f"{task.name}: {task.reason.split('; ', 1)[1]}")
    console.print(f"batch size {plan.batch_size}; {sum(s.steps for s in plan.stages)} steps in all")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--output", "-o", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--examples", multiple=True, metavar="TASK=COUNT",
              help="Training-example count of a task whose data is not local (repeatable).")
def plan(file: str, output: str, examples: tuple[str, ...]) -> None:
    """Show the plan: task filtering, high-resource tasks, stage mixtures, steps and passes."""
    overrides = _parse_examples(examples)
    result = load_file(file)
    if result.problems:
        for problem in result.problems:
            click.echo(str(problem), err=True)
        raise SystemExit(1)
    plans = []
    failed = False
    for doc in result.documents:
        planned, problems = _plan_document(doc, overrides)
        for problem in problems:
            click.echo(problem, err=True)
        failed = failed or planned is None
        if planned is not None:
            plans.append((doc, planned))
    if output == "json":
        payload = [p.to_wire() for _, p in plans]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for doc, planned in plans:
            render_table(planned, f"MultiTaskModel {doc.model.metadata.name} ({doc.file})")
    raise SystemExit(1 if failed else 0)
