"""The prepare step: fetch, validate and split every task's data, then write plan.json.

    python -m multitask_trainer prepare --workspace DIR --spec model.yaml

Writes data/<task>/{train,eval}.jsonl (normalized: one {"input", "output"} object a line),
data/manifest.json (counts, labels, where each file came from), spec.json and, last, plan.json.
Nothing is published unless every task is valid, so a failed prepare leaves no data/ behind
that a rerun could mistake for finished work.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from multitask_operator.api import MultiTaskModelSpec, Task
from multitask_operator.api.results import PrepareResult
from multitask_operator.datafiles import (
    DataError,
    Example,
    check_task_examples,
    infer_labels,
    read_examples,
)
from multitask_operator.planner import PlanError, build_plan, eval_split_size
from multitask_operator.workspace import Workspace, publish, read_marker, write_json_atomic

from .errors import TrainerError
from .fetch import fetch
from .fingerprint import changes, task_fingerprints
from .gguf import convert, is_gguf
from .specfile import spec_digest


def _read(task: Task, value: str, split: str, downloads: Path) -> tuple[Path, list[Example]]:
    what = f"task {task.name} data.{split}"
    path = fetch(value, downloads / task.name / f"{split}.jsonl", what, split)
    try:
        examples = read_examples(path, task)
        if split == "train":
            check_task_examples(task, path, examples)
    except DataError as err:
        raise TrainerError(f"task {task.name} data.{split}: {err}") from err
    return path, examples


def split_eval(task: Task, examples: list[Example], seed: int) -> tuple[list[Example], list]:
    """(train, eval) of a task without an eval file: a seeded shuffle, the same on every run.

    The seed mixes in the task name so that tasks with equal sizes do not share a split."""
    held_out = eval_split_size(len(examples), task.data.eval_fraction)
    order = list(range(len(examples)))
    random.Random(f"{seed}:{task.name}").shuffle(order)
    chosen = set(order[:held_out])
    train = [e for i, e in enumerate(examples) if i not in chosen]
    evals = [e for i, e in enumerate(examples) if i in chosen]
    return train, evals


def _check_eval_labels(task: Task, labels: list[str], path: Path, evals: list[Example]) -> None:
    """Labels inferred from train must cover eval: the model can only answer known labels."""
    for example in evals:
        if example.output not in labels:
            raise TrainerError(
                f"task {task.name} data.eval: {path}:{example.line}: output "
                f"{example.output!r} does not occur in the training data; known labels: "
                f"{', '.join(labels)}"
            )


def _write_jsonl(path: Path, examples: list[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for e in examples:
            handle.write(json.dumps({"input": e.input, "output": e.output}, ensure_ascii=False))
            handle.write("\n")


def prepare(spec: MultiTaskModelSpec, ws: Workspace) -> dict[str, Any]:
    """Run the prepare step; returns its summary. A finished prepare with the same spec is a
    no-op; a finished one with another spec is an error (a new spec needs a new workspace)."""
    digest = spec_digest(spec)
    fingerprints = task_fingerprints(spec)  # before reading: a change meanwhile shows next time
    if ws.prepared():
        marker = read_marker(ws.data_dir) or {}
        if marker.get("specDigest") != digest:
            raise TrainerError(
                f"{ws.root}: was prepared for a different spec; use a new workspace directory"
            )
        changed = changes(marker.get("fingerprints") or fingerprints, fingerprints)
        if changed:
            raise TrainerError(
                f"{ws.root}: the data of {', '.join(changed)} changed since this workspace was "
                "prepared; its steps would train on the old data: use a new workspace "
                "directory (mtm run --fresh)")
        return PrepareResult.model_validate({**marker, "skipped": True}).to_details()

    if spec.recipe.keep == "all-as-adapters" and spec.training.method == "full":
        raise TrainerError("recipe.keep all-as-adapters trains one LoRA adapter per group; it "
                           "needs training.method lora, got full")
    stored = spec.to_wire()  # what the later steps read: a GGUF base model, converted once
    if is_gguf(spec.base_model.path):
        assert spec.base_model.path is not None
        stored["baseModel"]["path"] = str(convert(Path(spec.base_model.path),
                                                  ws.root / "base-model"))
    downloads = ws.root / "downloads"
    splits: dict[str, tuple[list[Example], list[Example]]] = {}
    manifest: dict[str, Any] = {"tasks": {}}
    counts: dict[str, int] = {}
    inferred: dict[str, list[str]] = {}
    for task in spec.tasks:
        train_path, train = _read(task, task.data.train, "train", downloads)
        if task.data.eval is not None:
            eval_path, evals = _read(task, task.data.eval, "eval", downloads)
        else:
            eval_path = None
            train, evals = split_eval(task, train, spec.training.seed)
            if not evals:
                raise TrainerError(
                    f"task {task.name} data.train: {train_path}: {len(train)} example(s) are too "
                    "few to hold any out for evaluation; add examples or set data.eval"
                )
        labels = None
        if task.type == "classification":
            labels = list(task.labels) if task.labels else infer_labels(train)
            if not task.labels:
                inferred[task.name] = labels
            _check_eval_labels(task, labels, eval_path or train_path, evals)
        splits[task.name] = (train, evals)
        counts[task.name] = len(train)
        manifest["tasks"][task.name] = {
            "type": str(task.type),
            "labels": labels,
            "train": len(train),
            "eval": len(evals),
            "trainSource": task.data.train,
            "evalSource": task.data.eval or f"held out from train ({task.data.eval_fraction})",
        }
    try:
        plan = build_plan(spec, counts, inferred)
    except PlanError as err:
        raise TrainerError(f"planning failed: {err}") from err

    # The operator reads this summary from the termination message (no workspace access): the
    # labels route classification tasks whose spec declares none.
    labels_by_task = {name: entry["labels"] for name, entry in manifest["tasks"].items()
                      if entry.get("labels")}
    summary = {"specDigest": digest, "counts": counts, "labels": labels_by_task,
               "fingerprints": fingerprints}
    with publish(ws.data_dir, summary) as scratch:
        for name, (train, evals) in splits.items():
            _write_jsonl(scratch / name / "train.jsonl", train)
            _write_jsonl(scratch / name / "eval.jsonl", evals)
        write_json_atomic(scratch / "manifest.json", manifest)
    write_json_atomic(ws.spec_file, stored)
    # plan.json last: its presence (with data/COMPLETE) is what marks prepare as finished.
    write_json_atomic(ws.plan_file, plan.to_wire())
    return PrepareResult.model_validate(
        {**summary, "skipped": False, "stages": [s.name for s in plan.stages]}).to_details()


def load_manifest(ws: Workspace) -> dict[str, Any]:
    if not ws.prepared():
        raise TrainerError(f"{ws.root}: not prepared; run the prepare step first")
    return json.loads(ws.manifest_file.read_text(encoding="utf-8"))


def read_split(ws: Workspace, task: str, split: str) -> list[dict[str, str]]:
    path = ws.train_file(task) if split == "train" else ws.eval_file(task)
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
