"""The local pipeline: validate, plan, then prepare -> stages -> evaluate -> export -> report.

Everything `mtm validate` rejects is rejected here before any training starts. Finished steps
are skipped (their completion markers are in the workspace), so a rerun resumes; the trainer
itself refuses a workspace prepared for a different spec.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..api.status import Plan
from ..loader import DataSummary, Document, check_data, load_file
from ..planner import build_plan
from ..tables import render_plan_table
from ..workspace import Workspace, claim_folder, fresh_refusal
from .display import RunDisplay
from .process import run_trainer_step
from .steps import prepare_step, remaining_steps


class RunRefused(ValueError):
    """The input cannot run; `problems` are one sentence each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class RunResult:
    workspace: Workspace
    report: dict[str, Any]
    report_dir: Path
    document: Document


def load_document(file: str, name: str | None) -> tuple[Document, DataSummary]:
    """The chosen document and what its local data holds; RunRefused lists every problem."""
    result = load_file(file)
    problems = [str(p) for p in result.problems]
    docs = [d for d in result.documents if name is None or d.model.metadata.name == name]
    if not problems and len(docs) != 1:
        names = ", ".join(d.model.metadata.name for d in result.documents)
        problems.append(
            f"{file}: no MultiTaskModel named {name}; found: {names}"
            if name
            else f"{file}: holds {len(docs)} MultiTaskModels ({names}); choose one with --name"
        )
    if problems:
        raise RunRefused(problems)
    doc = docs[0]
    data = check_data(doc)
    problems = [str(p) for p in data.problems]
    for task, location in data.remote.items():
        if location.startswith("pvc://"):
            problems.append(
                f"{file}: task {task}: {location} is a cluster volume; mtm run needs "
                "a local path, http(s)://, s3:// or hf://datasets/ location"
            )
    if problems:
        raise RunRefused(problems)
    return doc, data


def run_pipeline(
    file: str,
    workspace: Path | None = None,
    name: str | None = None,
    fresh: bool = False,
    display: RunDisplay | None = None,
) -> RunResult:
    display = display or RunDisplay()
    doc, data = load_document(file, name)
    model_name = doc.model.metadata.name
    ws = Workspace(workspace or Path("workspace") / model_name)
    if fresh and ws.root.exists():
        refusal = fresh_refusal(ws.root)
        if refusal:
            raise RunRefused([refusal])
        shutil.rmtree(ws.root)
        display.note(f"--fresh: removed {ws.root}")
    claim_folder(ws.root)

    if not data.remote:  # the plan the trainer will compute, shown before anything runs
        render_plan_table(
            build_plan(doc.model.spec, data.counts, data.labels),
            f"MultiTaskModel {model_name}: plan",
        )
    display.note(f"workspace: {ws.root}")

    def run(step_name: str, args: tuple[str, ...], total: int | None) -> None:
        display.start(step_name, total)
        try:
            summary = run_trainer_step(step_name, args, ws.root, display.progress)
        except Exception as err:
            display.fail(step_name, getattr(err, "message", str(err)))
            raise
        display.finish(step_name, summary)

    prepare = prepare_step(str(Path(file).resolve()))
    run(prepare.name, prepare.args, None)
    plan = Plan.model_validate(json.loads(ws.plan_file.read_text()))
    done, todo = remaining_steps(ws, plan)
    for step in done:
        display.skipped(step.name, "already finished in this workspace")
    for skipped in plan.skipped:
        display.skipped(skipped.name, skipped.reason)
    for step in todo:
        run(step.name, step.args, step.total_steps)

    from .report import write_report

    report, folder = write_report(ws, model_name)
    return RunResult(ws, report, folder, doc)
