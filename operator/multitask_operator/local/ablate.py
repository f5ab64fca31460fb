"""`mtm ablate`: the recipe against plain multi-task training, on the user's own tasks.

For every seed: the recipe's workspace is prepared first (the trainer's own split and counts),
then every variant (`planner.ablation`) is written as a spec file into its own workspace and
run with the same trainer steps as `mtm run`: prepare, its stages, evaluate. Layout:

    WORKSPACE/ablation/runs/seed-S/recipe/                 spec.yaml + a trainer workspace
    WORKSPACE/ablation/runs/seed-S/single-task/TASK/       one per task, shared by all variants
    WORKSPACE/ablation/runs/seed-S/VARIANT/steps.json      wall seconds of each step as run
    WORKSPACE/ablation/{ablation.md, ablation.json, ratios.png}

A rerun resumes: finished steps are skipped by their workspace markers, as in `mtm run`. A
stage that an earlier run of the seed already trained with the same inputs (the recipe's stage 1
in every swept variant) is copied instead of trained again (local/reuse.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..api.resource import API_VERSION, KIND
from ..api.results import TrainResult
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from ..datafiles import parse_location
from ..loader import Document
from ..planner.ablation import (
    MULTI_TASK_VARIANTS,
    AblationError,
    Variant,
    build_variants,
    check_variant_names,
    recipe_variant,
    seeded_spec,
    training_steps,
)
from ..workspace import Workspace, claim_folder, fresh_refusal
from .ablation_report import record_time, write_ablation_report
from .display import RunDisplay
from .pipeline import load_document
from .process import run_trainer_step
from .records import RunRecord
from .reuse import reuse_stage
from .steps import prepare_step, remaining_steps


@dataclass
class AblationOutcome:
    folder: Path  # WORKSPACE/ablation
    runs: list[RunRecord] = field(default_factory=list)
    report: dict[str, Any] | None = None


def resolved_spec(doc: Document) -> MultiTaskModelSpec:
    """The spec with local paths made absolute, so a derived spec file works from any folder."""
    data = doc.model.spec.to_wire()
    path = data["baseModel"].get("path")
    if path and not Path(path).expanduser().is_absolute():
        data["baseModel"]["path"] = str((doc.base_dir / Path(path).expanduser()).resolve())
    for task in data["tasks"]:
        for split in ("train", "eval"):
            value = task["data"].get(split)
            where = parse_location(value, doc.base_dir) if value else None
            if where is not None and where.is_local:
                task["data"][split] = str(where.file.resolve())
    return MultiTaskModelSpec.model_validate(data)


def write_spec(root: Path, name: str, spec: MultiTaskModelSpec) -> Path:
    """root/spec.yaml: a MultiTaskModel document the trainer's prepare step reads."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "spec.yaml"
    document = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name},
                "spec": spec.to_wire()}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


class Runner:
    """Runs trainer steps in one workspace and records their wall time in steps.json."""

    def __init__(self, display: RunDisplay):
        self.display = display
        self.finished: list[Workspace] = []  # donors of identical stages (local/reuse.py)

    def step(self, ws: Workspace, label: str, args: tuple[str, ...], total: int | None) -> None:
        self.display.start(label, total)
        began = time.monotonic()
        try:
            summary = run_trainer_step(label, args, ws.root, self.display.progress)
        except Exception as err:
            self.display.fail(label, getattr(err, "message", str(err)))
            raise
        self.display.finish(label, summary)
        if not summary.result(TrainResult).skipped:  # a no-op rerun keeps the first measurement
            record_time(ws.root, args[-1] if args[0] == "train" else args[0],
                        round(time.monotonic() - began, 2))

    def prepare(self, root: Path, name: str, spec: MultiTaskModelSpec, label: str) -> Plan:
        spec_file = write_spec(root, name, spec)
        ws = Workspace(root)
        step = prepare_step(str(spec_file.resolve()))
        self.step(ws, f"{label} prepare", step.args, None)
        return Plan.model_validate(json.loads(ws.plan_file.read_text()))

    def finish(self, root: Path, label: str) -> None:
        """Train the prepared workspace's stages and evaluate (no export: nothing is served)."""
        ws = Workspace(root)
        plan = Plan.model_validate(json.loads(ws.plan_file.read_text()))
        reused = set()
        for stage in plan.stages:  # in plan order: a stage's initFrom comes before it
            donor = reuse_stage(ws, stage.name, self.finished)
            if donor is not None:
                reused.add(stage.name)
                self.display.skipped(f"{label} {stage.name}",
                                     f"the same training as {donor.name}'s: reused")
        done, todo = remaining_steps(ws, plan)
        for step in done:
            if step.name != "export" and step.name not in reused:
                self.display.skipped(f"{label} {step.name}", "already finished")
        for step in todo:
            if step.name != "export":
                self.step(ws, f"{label} {step.name}", step.args, step.total_steps)
        self.finished.append(ws)


def prepared_counts(root: Path) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Training examples and labels per task, as the trainer's prepare step counted them."""
    manifest = json.loads(Workspace(root).manifest_file.read_text())["tasks"]
    counts = {name: entry["train"] for name, entry in manifest.items()}
    labels = {name: entry["labels"] for name, entry in manifest.items() if entry.get("labels")}
    return counts, labels


def run_ablation(
    file: str,
    workspace: Path | None = None,
    name: str | None = None,
    seeds: int = 3,
    variants: Sequence[str] = MULTI_TASK_VARIANTS,
    sweep: bool = False,
    limits: Sequence[int] | None = None,
    fresh: bool = False,
    display: RunDisplay | None = None,
) -> AblationOutcome:
    display = display or RunDisplay()
    doc, _ = load_document(file, name)
    check_variant_names(variants)
    if seeds < 1:
        raise AblationError(f"--seeds: {seeds} runs nothing; accepted: an integer >= 1")
    model_name = doc.model.metadata.name
    spec = resolved_spec(doc)
    folder = Path(workspace or Path("workspace") / model_name) / "ablation"
    if fresh and folder.exists():
        refusal = fresh_refusal(folder)
        if refusal:
            raise AblationError(refusal)
        shutil.rmtree(folder)
        display.note(f"--fresh: removed {folder}")
    claim_folder(folder)
    display.note(f"ablation workspace: {folder}")
    runner = Runner(display)
    outcome = AblationOutcome(folder)
    first_seed = spec.training.seed
    for seed in range(first_seed, first_seed + seeds):
        seed_dir = folder / "runs" / f"seed-{seed}"
        # The recipe's workspace is prepared first: its counts are the ones every run sees.
        recipe_root = seed_dir / "recipe"
        runner.prepare(recipe_root, model_name, seeded_spec(spec, seed), f"seed {seed} recipe")
        counts, labels = prepared_counts(recipe_root)
        planned = build_variants(spec, counts, labels, seed, variants, sweep, limits)
        budget = recipe_variant(spec, counts, labels, seed).steps
        display.note(f"seed {seed}: {len(planned)} runs; every multi-task variant trains "
                     f"{budget} steps")
        for variant in planned:
            root = seed_dir / variant.run_name
            label = f"seed {seed} {variant.run_name}"
            plan = runner.prepare(root, model_name, variant.spec, label)
            if training_steps(plan) != variant.steps:
                raise AblationError(f"{root}: the trainer planned {training_steps(plan)} steps, "
                                    f"the ablation {variant.steps}; run with --fresh")
            runner.finish(root, label)
            outcome.runs.append(_record(seed, variant, root))
        # After every seed, so that a long ablation shows its numbers as they come.
        outcome.report = write_ablation_report(folder, model_name, file, spec, outcome.runs)
        display.note(f"seed {seed} done: {folder / 'ablation.md'}")
    return outcome


def _record(seed: int, variant: Variant, root: Path) -> RunRecord:
    return RunRecord(seed, variant.name, variant.task, root, variant.temperature, variant.limit)
