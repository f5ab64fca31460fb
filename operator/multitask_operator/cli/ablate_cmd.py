"""`mtm ablate FILE`: does the recipe beat plain multi-task training on these tasks?

    mtm ablate examples/local/model.yaml --seeds 3
    mtm ablate model.yaml --variants recipe,mtl-proportional --seeds 1
    mtm ablate model.yaml --sweep --sweep-k 100,400

Trains single-task baselines and each variant on the same data, model, seeds and step budget,
then writes WORKSPACE/ablation/{ablation.md, ablation.json, ratios.png}. Ctrl-C stops cleanly;
the same command resumes.
"""

from __future__ import annotations

from pathlib import Path

import click

VARIANTS_HELP = "mtl-proportional, mtl-temperature, recipe"


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _limits(value: str | None) -> list[int] | None:
    items = _csv(value)
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise click.BadParameter(f"{value!r}: accepted: comma-separated integers >= 1, "
                                 "e.g. 100,400", param_hint="--sweep-k") from None


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Workspace folder (default ./workspace/NAME); results in WORKSPACE/ablation.")
@click.option("--name", help="Which MultiTaskModel of a multi-document file.")
@click.option("--seeds", default=3, show_default=True,
              help="Seeds per variant: training.seed, training.seed + 1, ...")
@click.option("--variants", default=",".join(("mtl-proportional", "mtl-temperature", "recipe")),
              show_default=True, help=f"Comma-separated multi-task variants: {VARIANTS_HELP}. "
              "Single-task baselines always run.")
@click.option("--sweep", is_flag=True, help="Also the recipe over tau 1.43, 2, 3.33 and a few K.")
@click.option("--sweep-k", help="K values of --sweep (default: the spec's K, the median size "
              "of the unified model's tasks, no limit).")
@click.option("--fresh", is_flag=True, help="Delete WORKSPACE/ablation first and start over.")
def ablate(file: str, workspace: Path | None, name: str | None, seeds: int, variants: str,
           sweep: bool, sweep_k: str | None, fresh: bool) -> None:
    """Compare single-task, plain multi-task and the recipe on the same budget."""
    from ..local.ablate import run_ablation
    from ..local.pipeline import RunRefused
    from ..local.process import StepFailed
    from ..planner.ablation import AblationError

    try:
        outcome = run_ablation(file, workspace, name=name, seeds=seeds,
                               variants=_csv(variants) or [], sweep=sweep,
                               limits=_limits(sweep_k), fresh=fresh)
    except RunRefused as err:
        for problem in err.problems:
            click.echo(problem, err=True)
        raise SystemExit(1) from None
    except AblationError as err:
        click.echo(f"mtm ablate: {err}", err=True)
        raise SystemExit(1) from None
    except StepFailed as err:
        if err.stderr_tail and err.message not in err.stderr_tail:
            click.echo(err.stderr_tail, err=True)
        click.echo(f"mtm ablate: step {err.step} failed: {err.message}", err=True)
        if "different spec" in err.message:  # the spec (or its defaults) changed since
            click.echo("the finished runs belong to another spec: add --fresh to start over, "
                       "or use another --workspace", err=True)
        else:
            click.echo("fix the problem and run the same command again to resume", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted; run the same command again to resume", err=True)
        raise SystemExit(130) from None
    report = outcome.folder / "ablation.md"
    click.echo(report.read_text(encoding="utf-8").split("\n\nStages of")[0])
    click.echo(f"\nreport: {report}")
