"""What a person sees during `mtm run`: the plan, a progress bar per training stage with loss,
tokens/s and ETA, each step's outcome, and the trainer's message on failure.

On a terminal the bars are live (rich); in a log (CI, `make demo | tee`) each progress event is
one plain line instead, because a live display there would print nothing until the end.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from ..api.results import ProgressEvent, StepSummary


def _fields(event: ProgressEvent) -> str:
    parts = []
    if event.loss is not None:
        parts.append(f"loss {event.loss:.3f}")
    if event.tokens_per_second is not None:
        parts.append(f"{event.tokens_per_second:,.0f} tok/s")
    return "  ".join(parts)


class RunDisplay:
    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.live = self.console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = 0.0

    # -- a step
    def start(self, name: str, total: int | None) -> None:
        self._started = time.monotonic()
        if self.live and total:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<18}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(name, total=total, info="")
        else:
            self.console.print(f"[bold]{name}[/bold] ...")

    def progress(self, event: ProgressEvent) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=event.step, total=event.total_steps,
                                  info=_fields(event))
            return
        eta = f"  eta {event.eta_seconds:.0f}s" if event.eta_seconds is not None else ""
        self.console.print(
            f"  {event.stage} step {event.step}/{event.total_steps} ({event.percent:.0f}%)"
            f"  {_fields(event)}{eta}", highlight=False)

    def finish(self, name: str, summary: StepSummary) -> None:
        self._close()
        seconds = time.monotonic() - self._started
        self.console.print(f"[green]ok[/green] {name}: {summary.message} ({seconds:.0f}s)")

    def fail(self, name: str, message: str) -> None:
        self._close()
        self.console.print(f"[red]failed[/red] {name}: {message}")

    def skipped(self, name: str, why: str) -> None:
        self.console.print(f"[dim]skip {name}: {why}[/dim]")

    def note(self, text: str) -> None:
        self.console.print(text)

    def _close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None
        self._task = None
