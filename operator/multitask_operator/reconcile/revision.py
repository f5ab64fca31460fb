"""The training revision: a short, stable hash of the spec fields that change the trained model.

A change to any of them retrains in a new workspace directory (`revisions/<revision>/`) with new
Jobs; a change elsewhere (serving, per-task Services, GPU counts, where the Jobs run) keeps the
revision, reuses every finished step and only rolls serving out again.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.spec import MultiTaskModelSpec

LENGTH = 8  # hex digits: 4 billion values, plenty for the revisions of one object

# training.* fields that decide where and how fast the Jobs run, not what they compute.
_PLACEMENT = ("resources", "stepResources", "runtime", "queueName", "nodes", "fsdp",
              "dataSecret")


def training_fields(spec: MultiTaskModelSpec) -> dict[str, Any]:
    wire = spec.to_wire()
    tasks = []
    for task in wire["tasks"]:
        task = {k: v for k, v in task.items() if k != "service"}
        baseline = {k: v for k, v in (task.get("baseline") or {}).items() if k != "gpus"}
        task["baseline"] = baseline
        tasks.append(task)
    training = {k: v for k, v in wire["training"].items() if k not in _PLACEMENT}
    # Growing the volume or keeping more revisions must not retrain; moving to another claim
    # must (the work is not there).
    training["workspace"] = {
        k: v for k, v in (training.get("workspace") or {}).items()
        if k not in ("size", "keepRevisions")
    }
    return {"baseModel": wire["baseModel"], "tasks": tasks, "recipe": wire["recipe"],
            "training": training}


def training_revision(spec: MultiTaskModelSpec) -> str:
    text = json.dumps(training_fields(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]
