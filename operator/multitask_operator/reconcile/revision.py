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
              "dataSecret", "dataCheckIntervalSeconds")


def training_fields(spec: MultiTaskModelSpec, gate: bool = False) -> dict[str, Any]:
    """The fields that change what training computes. The gate (recipe.qualifyThreshold, the
    value of tasks[].baseline.score) is applied by the operator to the evaluation's scores, so
    it is left out: changing it re-decides qualification without retraining. Whether a
    baseline score is given stays in (without one, a baseline is trained). `gate=True` keeps
    it, as revisions were computed before (`current_revision` keeps a model deployed then on
    its revision until its spec changes)."""
    wire = spec.to_wire()
    tasks = []
    for task in wire["tasks"]:
        task = {k: v for k, v in task.items() if k != "service"}
        baseline = {k: v for k, v in (task.get("baseline") or {}).items() if k != "gpus"}
        if not gate:
            baseline["score"] = "given" if baseline.get("score") is not None else None
        task["baseline"] = baseline
        tasks.append(task)
    training = {k: v for k, v in wire["training"].items() if k not in _PLACEMENT}
    # Growing the volume or keeping more revisions must not retrain; moving to another claim
    # must (the work is not there).
    training["workspace"] = {
        k: v for k, v in (training.get("workspace") or {}).items()
        if k not in ("size", "keepRevisions")
    }
    recipe = dict(wire["recipe"])
    rule = recipe.pop("qualifyRule", "point")  # absent before the rule existed: same hashes
    if not gate:
        threshold = recipe.pop("qualifyThreshold", None)
        if rule == "nonInferiority":
            # Decided by evaluate's paired bootstrap at this threshold (the operator cannot
            # recompute it from scores): it belongs to what evaluate computes.
            recipe["nonInferiorityThreshold"] = threshold
    return {"baseModel": wire["baseModel"], "tasks": tasks, "recipe": recipe,
            "training": training}


RETRAIN_ANNOTATION = "multitask.ai/retrain"  # any new value forces a new revision


def training_revision(spec: MultiTaskModelSpec, extra: dict[str, str] | None = None,
                      gate: bool = False) -> str:
    """The revision of `spec`; `extra` (the data token, the retrain annotation) joins the hash
    only when set."""
    fields = training_fields(spec, gate)
    if extra:
        fields["extra"] = dict(sorted(extra.items()))
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:LENGTH]


def current_revision(spec: MultiTaskModelSpec, status: dict[str, Any],
                     annotations: dict[str, str]) -> str:
    """The revision to train and serve now: the spec's, changed by new data (the token the data
    check writes into status.data when a task's data changed) and by `multitask.ai/retrain`."""
    extra = {}
    token = (status.get("data") or {}).get("token")
    if token:
        extra["data"] = str(token)
    retrain = annotations.get(RETRAIN_ANNOTATION)
    if retrain:
        extra["retrain"] = retrain
    if not extra and spec.recipe.qualify_rule == "point" and (
            status.get("revision") == training_revision(spec, gate=True)):
        # Deployed by an operator that hashed the gate too, spec unchanged since: the same
        # revision, so that upgrading the operator retrains nothing.
        return str(status["revision"])
    return training_revision(spec, extra)
