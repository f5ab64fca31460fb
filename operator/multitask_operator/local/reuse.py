"""Reusing a finished training stage across the runs of one ablation seed.

The recipe and its swept variants (`mtm ablate --sweep`) differ only in stage 2's temperature
and dataset-size limit: their stage 1 is the same training on the same examples with the same
seed, nine times over. A stage is reused when everything the trainer reads for it is the same:
the stage's plan (tasks, weights, steps), the spec's `training` and `baseModel`, the stage's
tasks as specified, the bytes of their prepared training splits, and the same of the stage it
starts from, if any. Anything else trains.
The copy is published atomically (the trainer sees a finished stage or none) and leaves the
checkpoints behind; the run's steps.json gets the donor's wall time for the stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from ..api.status import Plan
from ..workspace import Workspace
from .ablation_report import read_times, record_time


def stage_key(ws: Workspace, stage: str) -> str | None:
    """A digest of everything the trainer reads to train `stage` in `ws`; None if the
    workspace has no such stage."""
    plan = Plan.model_validate(json.loads(ws.plan_file.read_text()))
    found = next((s for s in plan.stages if s.name == stage), None)
    if found is None:
        return None
    spec = json.loads(ws.spec_file.read_text())
    tasks = {t["name"]: t for t in spec["tasks"]}
    digest = hashlib.sha256()
    inputs = {
        "stage": found.model_dump(mode="json"),
        "training": spec.get("training"),
        "baseModel": spec.get("baseModel"),
        "tasks": [tasks.get(name) for name in found.tasks],
        "batchSize": plan.batch_size,
        # A stage that starts from another is the same only if that one is too.
        "initFrom": stage_key(ws, found.init_from) if found.init_from else None,
    }
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    for name in found.tasks:
        digest.update(ws.train_file(name).read_bytes())
    return digest.hexdigest()


def reuse_stage(target: Workspace, stage: str, donors: Iterable[Workspace]) -> Path | None:
    """Copy `stage` from the first donor that finished it with the same inputs into `target`
    (which has not finished it); returns the donor's root, or None when none qualifies."""
    if target.stage_done(stage):
        return None
    key = stage_key(target, stage)
    if key is None:
        return None
    for donor in donors:
        if donor.root == target.root or not donor.stage_done(stage):
            continue
        if stage_key(donor, stage) != key:
            continue
        destination = target.stage_dir(stage)
        scratch = destination.with_name(destination.name + ".reused")
        if scratch.exists():
            shutil.rmtree(scratch)
        shutil.copytree(donor.stage_dir(stage), scratch,
                        ignore=shutil.ignore_patterns("checkpoints"))
        if destination.exists():  # an unfinished attempt of its own: replaced
            shutil.rmtree(destination)
        os.replace(scratch, destination)
        seconds = read_times(donor.root).get(stage)
        if seconds is not None:  # so that train times stay comparable across variants
            record_time(target.root, stage, seconds)
        return donor.root
    return None
