"""`mtm run FILE`: the whole pipeline on this machine, then a report (and, with --serve, a
local gateway in front of a development inference server).

    mtm run examples/local/model.yaml
    mtm run model.yaml --workspace /data/ws --fresh
    mtm run model.yaml --serve --port 8080

Ctrl-C stops cleanly; the same command resumes from the last finished step or checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import click


def _final_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..local.report import qualified_cell, with_interval

    table = Table(title="result", title_justify="left")
    for column in ("task", "included", "metric", "score [95% CI]", "baseline [95% CI]",
                   "majority", "ratio", "qualified"):
        table.add_column(column)

    def fmt(value):
        return "-" if value is None else f"{value:.3f}"

    for t in report["tasks"]:
        table.add_row(t["name"], "yes" if t["included"] else "no", t["metric"],
                      with_interval(t["score"], t.get("scoreInterval")),
                      with_interval(t["baseline"], t.get("baselineInterval")),
                      fmt(t.get("majority")), fmt(t["ratio"]), qualified_cell(t))
    console = Console()
    console.print(table)
    s = report["serving"]
    console.print(f"serving GPUs: {s['gpusBefore']} before -> {s['gpusAfter']} after "
                  f"({s['costSaving']} saved); {len(report['qualified'])} of "
                  f"{len(report['tasks'])} tasks qualified")


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--workspace", type=click.Path(file_okay=False, path_type=Path),
              help="Workspace folder (default ./workspace/NAME).")
@click.option("--name", help="Which MultiTaskModel of a multi-document file.")
@click.option("--fresh", is_flag=True, help="Delete the workspace first and start over.")
@click.option("--serve", is_flag=True, help="Then serve the model locally through the gateway.")
@click.option("--port", default=8080, show_default=True, help="Gateway port with --serve.")
def run(file: str, workspace: Path | None, name: str | None, fresh: bool, serve: bool,
        port: int) -> None:
    """Run prepare -> stage 1 -> stage 2 -> baselines -> evaluate -> export locally."""
    from ..local.pipeline import RunRefused, run_pipeline
    from ..local.process import StepFailed

    try:
        result = run_pipeline(file, workspace, name=name, fresh=fresh)
    except RunRefused as err:
        for problem in err.problems:
            click.echo(problem, err=True)
        raise SystemExit(1) from None
    except StepFailed as err:
        if err.stderr_tail and err.message not in err.stderr_tail:
            click.echo(err.stderr_tail, err=True)
        click.echo(f"mtm run: step {err.step} failed: {err.message}", err=True)
        click.echo("fix the problem and run the same command again to resume", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        click.echo("\ninterrupted; run the same command again to resume", err=True)
        raise SystemExit(130) from None
    _final_table(result.report)
    click.echo(f"report: {result.report_dir / 'report.md'}")
    if serve:
        from ..local.serve import serve_locally

        serve_locally(result, port)
