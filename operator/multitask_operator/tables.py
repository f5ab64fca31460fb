"""Terminal tables shared by `mtm plan` and `mtm run`."""

from __future__ import annotations

from .api.status import Plan


def render_plan_table(plan: Plan, title: str) -> None:
    """Print the plan: per task its kind, group, inclusion and per-stage probability and passes;
    then the stages, what was skipped and why tasks are out."""
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
