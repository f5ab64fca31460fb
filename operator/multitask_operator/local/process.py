"""Run one trainer step as a child process and stream its progress.

The child is `python -m multitask_trainer ...` with the interpreter running `mtm`, in its own
process group so that Ctrl-C reaches it once, through us: we forward SIGINT, give it time to stop
at a step boundary (its checkpoints make the rerun resume), then kill it if it does not.
Progress arrives as JSON lines on stdout; its one-sentence result in the termination-log file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..api.results import ProgressEvent, StepSummary, parse_progress_line

STOP_GRACE_SECONDS = 30


class StepFailed(RuntimeError):
    def __init__(self, step: str, message: str, stderr_tail: str = ""):
        super().__init__(message)
        self.step = step
        self.message = message
        self.stderr_tail = stderr_tail


def _read_summary(path: Path) -> StepSummary | None:
    try:
        return StepSummary.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def run_trainer_step(
    name: str,
    args: tuple[str, ...],
    workspace: Path,
    on_progress: Callable[[ProgressEvent], None],
    on_output: Callable[[str], None] | None = None,
    extra_env: dict[str, str] | None = None,
) -> StepSummary:
    """Run the step to completion; raise StepFailed with the trainer's message if it fails."""
    workspace.mkdir(parents=True, exist_ok=True)
    result_file = workspace / ".step-result.json"
    result_file.unlink(missing_ok=True)
    env = {**os.environ, "MTM_TERMINATION_LOG": str(result_file), "PYTHONUNBUFFERED": "1",
           **(extra_env or {})}
    command = [sys.executable, "-m", "multitask_trainer", *args, "--workspace", str(workspace)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, start_new_session=True, bufsize=1)
    stderr_tail: deque[str] = deque(maxlen=40)

    def pump_stderr() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            stderr_tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump_stderr, daemon=True)
    reader.start()
    try:
        assert child.stdout is not None
        for line in child.stdout:
            event = parse_progress_line(line)
            if event is not None:
                on_progress(event)
            elif on_output is not None and line.strip():
                on_output(line.rstrip("\n"))
        code = child.wait()
    except KeyboardInterrupt:
        _stop(child)
        raise
    reader.join(timeout=5)
    summary = _read_summary(result_file)
    if code != 0 or summary is None or not summary.ok:
        message = summary.message if summary is not None and not summary.ok else (
            f"the trainer exited with code {code}" + (f": {stderr_tail[-1]}" if stderr_tail else "")
        )
        raise StepFailed(name, message, "\n".join(stderr_tail))
    return summary


def _stop(child: subprocess.Popen) -> None:
    """Ask the child's process group to stop (SIGINT), then kill it after a grace period."""
    try:
        os.killpg(child.pid, signal.SIGINT)
        child.wait(timeout=STOP_GRACE_SECONDS)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
