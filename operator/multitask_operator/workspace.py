"""The workspace volume that the trainer's steps share (DESIGN.md, "Lifecycle"). Pure: no torch.

    plan.json                     the planner's output with real counts (written last by prepare)
    spec.json                     the spec prepare ran with, data paths resolved
    data/<task>/{train,eval}.jsonl  normalized examples;  data/manifest.json: counts and labels
    stages/<stage>/checkpoints/step-NNNNNNNN/   resumable training state, the last few kept
    stages/<stage>/final/         the stage's model (LoRA adapter or full weights)
    stages/<stage>/progress.jsonl the stage's progress events
    eval/results.json             per-task scores, baselines and qualification
    export/                       the inference-ready model
    report/                       human-readable reports

Finished work is recognisable and half-written work is not: every output directory is built
under `<name>.partial`, gets a `COMPLETE` marker, and only then is renamed to its final name
(`publish`). A rename within one filesystem is atomic, so a directory without the marker, or a
`.partial` one, is always an interrupted attempt that the next run deletes and redoes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"
PARTIAL_SUFFIX = ".partial"
CHECKPOINT_PREFIX = "step-"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def is_complete(directory: Path) -> bool:
    return (directory / MARKER).is_file()


def read_marker(directory: Path) -> dict[str, Any] | None:
    """The summary stored in a finished directory's marker, or None if it is not finished."""
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return marker if isinstance(marker, dict) else None


@contextmanager
def publish(target: Path, summary: dict[str, Any] | None = None) -> Iterator[Path]:
    """Build `target` in a scratch directory and make it appear only when the block succeeds.

    Yields the scratch directory. A leftover scratch directory or an unmarked `target` from an
    interrupted run is removed first; on an exception the scratch directory is removed too.
    """
    scratch = target.with_name(target.name + PARTIAL_SUFFIX)
    if scratch.exists():
        shutil.rmtree(scratch)
    if target.exists() and not is_complete(target):
        shutil.rmtree(target)
    scratch.mkdir(parents=True)
    try:
        yield scratch
        marker = {"completedAt": datetime.now(UTC).isoformat(timespec="seconds")}
        marker.update(summary or {})
        write_json_atomic(scratch / MARKER, marker)
        if target.exists():  # a finished older version: replaced as a whole
            shutil.rmtree(target)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


# Written into every folder that `mtm run` / `mtm ablate` create, so that `--fresh` deletes only
# folders this project made, never a directory a mistyped --workspace points at.
WORKSPACE_MARKER = ".mtm-workspace"


def claim_folder(folder: Path) -> None:
    """Create `folder` if needed and mark it as the project's."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / WORKSPACE_MARKER
    if not marker.exists():
        marker.write_text("created by mtm (multitask-operator); `--fresh` may delete this folder\n")


def fresh_refusal(folder: Path) -> str | None:
    """Why `--fresh` must not delete `folder`, or None when it may (absent, empty or marked)."""
    if not folder.exists() or (folder / WORKSPACE_MARKER).is_file():
        return None
    if not folder.is_dir():
        return f"--fresh: {folder} is not a directory; refusing to delete it"
    if any(folder.iterdir()):
        return (f"--fresh: {folder} was not created by mtm (it has no {WORKSPACE_MARKER} "
                "marker), so it is not deleted; delete it yourself if you mean to, or pick "
                "another --workspace")
    return None


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept str too

    # -- prepare
    @property
    def plan_file(self) -> Path:
        return self.root / "plan.json"

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def manifest_file(self) -> Path:
        return self.data_dir / "manifest.json"

    def train_file(self, task: str) -> Path:
        return self.data_dir / task / "train.jsonl"

    def eval_file(self, task: str) -> Path:
        return self.data_dir / task / "eval.jsonl"

    def prepared(self) -> bool:
        # plan.json is written after data/ is published, so it implies finished data.
        return self.plan_file.is_file() and is_complete(self.data_dir)

    # -- stages
    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def checkpoints_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "checkpoints"

    def checkpoint_dir(self, stage: str, step: int) -> Path:
        return self.checkpoints_dir(stage) / f"{CHECKPOINT_PREFIX}{step:08d}"

    def final_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "final"

    def progress_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / "progress.jsonl"

    def stage_done(self, stage: str) -> bool:
        return is_complete(self.final_dir(stage))

    def checkpoints(self, stage: str) -> list[tuple[int, Path]]:
        """Finished checkpoints of `stage` as (step, path), oldest first."""
        found = []
        directory = self.checkpoints_dir(stage)
        if not directory.is_dir():
            return []
        for path in directory.iterdir():
            name = path.name
            if not name.startswith(CHECKPOINT_PREFIX) or not is_complete(path):
                continue
            try:
                found.append((int(name[len(CHECKPOINT_PREFIX) :]), path))
            except ValueError:
                continue
        return sorted(found)

    def latest_checkpoint(self, stage: str) -> tuple[int, Path] | None:
        found = self.checkpoints(stage)
        return found[-1] if found else None

    # -- evaluate, export, report
    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def eval_results_file(self) -> Path:
        return self.eval_dir / "results.json"

    def evaluated(self) -> bool:
        return is_complete(self.eval_dir)

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def exported(self) -> bool:
        return is_complete(self.export_dir)

    @property
    def report_dir(self) -> Path:
        return self.root / "report"


REVISION_NAME = re.compile(r"^[0-9a-f]{8}$")


def remove_revisions(revisions: Path, keep: set[str]) -> list[str]:
    """Delete the revision folders under `revisions` (named like a training revision) that are
    not in `keep`; each is renamed first, so that an interrupted deletion leaves a folder no
    revision will ever be confused with (and the next call finishes it). Returns their names."""
    removed = []
    for child in sorted(revisions.iterdir()) if revisions.is_dir() else []:
        if child.name.endswith(".deleting") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        elif REVISION_NAME.match(child.name) and child.is_dir() and child.name not in keep:
            doomed = child.with_name(child.name + ".deleting")
            child.rename(doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(child.name)
    return removed
