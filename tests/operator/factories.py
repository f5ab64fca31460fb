"""Builders of the API objects the reconcile core reads: a MultiTaskModel spec, finished Jobs
with the trainer's termination message, Deployments and per-task Services.

The Jobs and pods are plain dicts in the shape the API server returns, parsed through the same
`observed` functions the operator uses, so the unit tests exercise the parsing too.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from multitask_operator.api.results import StepSummary, termination_message
from multitask_operator.reconcile import Observed
from multitask_operator.reconcile.observed import (
    deployment_state,
    job_state,
    service_state,
)
from multitask_operator.render.jobs import REVISION_LABEL, STEP_ANNOTATION
from multitask_operator.render.meta import REVISION_ANNOTATION

NAME, NAMESPACE, UID = "demo", "ml", "uid-1"

SPEC: dict[str, Any] = {
    "baseModel": {"id": "Qwen/Qwen2.5-1.5B-Instruct"},
    "tasks": [
        {"name": "intent", "type": "classification", "labels": ["refund", "shipping"],
         "instruction": "Classify the intent.", "data": {"train": "pvc://data/intent.jsonl"},
         "baseline": {"score": 0.8, "gpus": 1}, "service": {"name": "intent-svc"}},
        {"name": "topic", "type": "classification", "labels": ["a", "b", "c"],
         "instruction": "Classify the topic.", "data": {"train": "pvc://data/topic.jsonl"},
         "baseline": {"score": 0.9, "gpus": 2}, "service": {"name": "topic-svc"}},
        {"name": "summary", "type": "generation", "instruction": "Summarise.",
         "data": {"train": "pvc://data/summary.jsonl"}, "baseline": {"score": 0.5}},
    ],
    "recipe": {"highResourceThreshold": 1000},
}
COUNTS = {"intent": 2000, "topic": 300, "summary": 100}


def spec(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(SPEC)
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def job(step: str, revision: str, phase: str, summary: StepSummary | None = None,
        raw_message: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase == "Running":
        status = {"active": 1, "startTime": "2026-01-01T00:00:00Z"}
    elif phase in ("Succeeded", "Failed"):
        kind = "Complete" if phase == "Succeeded" else "Failed"
        status = {"conditions": [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded"
                                  if phase == "Failed" else "Completed"}]}
    obj = {
        "metadata": {"name": f"{NAME}-{step}-{revision}",
                     "labels": {REVISION_LABEL: revision},
                     "annotations": {STEP_ANNOTATION: step, REVISION_ANNOTATION: revision}},
        "spec": {}, "status": status,
    }
    message = termination_message(summary) if summary else raw_message
    pods = []
    if message:
        pods = [{"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
                 "status": {"containerStatuses": [
                     {"state": {"terminated": {"exitCode": 0, "message": message}}}]}}]
    return job_state(obj, pods)


def ok(step: str, stage: str | None = None, message: str = "done", **details: Any):
    return StepSummary(step=step, stage=stage, ok=True, message=message, details=details)


def finished_jobs(revision: str, *, qualified=("intent", "topic"), upto: str = "export",
                  prompt=True):
    """Succeeded Jobs of every step up to and including `upto`."""
    # Scores that pass the spec's gate (qualifyThreshold x baseline.score) exactly for
    # `qualified`: the operator decides qualification from them.
    scores = {"intent": 0.85 if "intent" in qualified else 0.5,
              "topic": 0.95 if "topic" in qualified else 0.5, "summary": 0.1}
    export_details = {"layout": "merged"}
    if prompt:
        export_details["promptFormat"] = {"prefix": "<u>", "suffix": "<a>",
                                          "source": "chat_template"}
    order = [
        ("prepare", ok("prepare", counts=COUNTS)),
        ("stage1", ok("train", "stage1")),
        ("stage2", ok("train", "stage2")),
        ("evaluate", ok("evaluate", scores=scores, qualified=list(qualified))),
        ("export", ok("export", **export_details)),
    ]
    out = []
    for step, summary in order:
        out.append(job(step, revision, "Succeeded", summary))
        if step == upto:
            break
    return out


def deployment(name: str, revision: str, available: bool = True, failed: bool = False):
    conditions = []
    if available:
        conditions.append({"type": "Available", "status": "True"})
    if failed:
        conditions.append({"type": "Progressing", "status": "False",
                           "reason": "ProgressDeadlineExceeded", "message": "no GPU available"})
    return deployment_state({
        "metadata": {"name": name, "generation": 2},
        "spec": {"replicas": 1,
                 "template": {"metadata": {"annotations": {REVISION_ANNOTATION: revision}}}},
        "status": {"observedGeneration": 2, "updatedReplicas": 1 if available else 0,
                   "availableReplicas": 1 if available else 0, "conditions": conditions},
    })


def service(name: str, gpus: int | None = 1, annotations: dict | None = None,
            selector: dict | None = None, ready: bool = True):
    """A per-task Service and, with `gpus`, one running pod behind its original selector
    (ready or not)."""
    pods = None
    if gpus is not None:
        pods = [{"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
                 "status": {"phase": "Running", "conditions": [
                     {"type": "Ready", "status": "True" if ready else "False"}]}}]
    # Services opt in to being taken over by the model under test unless a test says otherwise.
    annotations = {"multitask.ai/takeover-by": NAME} if annotations is None else annotations
    return service_state({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"selector": selector or {"app": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8000}]},
    }, pods)


def observed(spec_dict: dict | None = None, **fields: Any) -> Observed:
    obs = Observed(name=NAME, namespace=NAMESPACE, uid=UID, generation=fields.pop("generation", 1),
                   spec=spec_dict or spec(), now="2026-01-01T00:00:00Z")
    for key, value in fields.items():
        setattr(obs, key, value)
    return obs


def cutover_record(service_name: str) -> str:
    return json.dumps({"model": NAME, "selector": {"app": service_name},
                       "ports": [{"name": "http", "port": 80, "targetPort": 8000}], "gpus": 1})
