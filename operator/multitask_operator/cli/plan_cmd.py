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
from ..tables import render_plan_table


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
        for line in problems:
            click.echo(line, err=True)
        failed = failed or planned is None
        if planned is not None:
            plans.append((doc, planned))
    if output == "json":
        payload = [p.to_wire() for _, p in plans]
        click.echo(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
    else:
        for doc, planned in plans:
            render_plan_table(planned, f"MultiTaskModel {doc.model.metadata.name} ({doc.file})")
    raise SystemExit(1 if failed else 0)
