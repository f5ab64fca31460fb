"""What the operator saw in the cluster for one MultiTaskModel, parsed from plain API objects.

The k8s layer fetches dicts (the object, its Jobs and their pods, Deployments, the per-task
Services and the pods behind them); the functions here turn them into the small states the
reconcile core decides on. Pure: dicts in, dataclasses out, so every case is unit-testable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.results import ProgressEvent, StepSummary
from ..render.jobs import REVISION_LABEL, STEP_ANNOTATION
from ..render.meta import REVISION_ANNOTATION

GPU = "nvidia.com/gpu"

PENDING, RUNNING, SUCCEEDED, FAILED, SUSPENDED = (
    "Pending", "Running", "Succeeded", "Failed", "Suspended")


@dataclass(frozen=True)
class JobState:
    name: str
    step: str
    revision: str
    phase: str
    summary: StepSummary | None = None  # the trainer's termination message, when it wrote one
    message: str = ""  # for people: the summary's message, the raw message, or the Job's reason
    started: str | None = None
    finished: str | None = None


@dataclass(frozen=True)
class DeploymentState:
    name: str
    revision: str | None
    available: bool
    failed: bool = False  # Progressing=False: the rollout gave up (ProgressDeadlineExceeded)
    message: str = ""


@dataclass(frozen=True)
class ServiceState:
    name: str
    selector: dict[str, str]
    ports: list[dict[str, Any]]
    annotations: dict[str, str]
    gpus: int | None = None  # GPUs requested by the pods its original selector picks; None: none


@dataclass
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    jobs: list[JobState] = field(default_factory=list)
    pvc_exists: bool = False
    configmaps: set[str] = field(default_factory=set)  # names of the spec ConfigMaps present
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)  # per-task Services found
    progress: ProgressEvent | None = None  # latest progress line of the running step
    now: str = ""  # RFC 3339, for condition transition times

    def job(self, step: str, revision: str) -> JobState | None:
        return next((j for j in self.jobs if j.step == step and j.revision == revision), None)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def parse_summary(text: str | None) -> StepSummary | None:
    if not text:
        return None
    try:
        return StepSummary.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError, TypeError):
        return None


def termination_message(pods: list[dict[str, Any]]) -> str | None:
    """The termination message of the newest pod that has one (the last attempt)."""
    newest = sorted(pods, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
    for pod in reversed(newest):
        for status in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated") or {}
            if terminated.get("message"):
                return terminated["message"]
    return None


def job_state(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """The state of a trainer Job; `pods` are its pods (read only once the Job has finished)."""
    meta = job.get("metadata", {})
    status = job.get("status", {})
    annotations = meta.get("annotations") or {}
    step = annotations.get(STEP_ANNOTATION, "")
    revision = annotations.get(REVISION_ANNOTATION) or (meta.get("labels") or {}).get(
        REVISION_LABEL, "")
    failed = _condition(job, "Failed")
    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        phase = SUCCEEDED
    elif failed or _condition(job, "FailureTarget"):
        phase = FAILED
    elif job.get("spec", {}).get("suspend"):
        phase = SUSPENDED
    elif status.get("active"):
        phase = RUNNING
    else:
        phase = PENDING
    raw = termination_message(pods) if phase in (SUCCEEDED, FAILED) else None
    summary = parse_summary(raw)
    if summary is not None:
        message = summary.message
    elif raw:
        message = raw.strip().splitlines()[-1][:500]  # FallbackToLogsOnError: the log's tail
    elif failed:
        message = f"{failed.get('reason', 'Failed')}: {failed.get('message', '')}".strip(": ")
    else:
        message = ""
    return JobState(
        name=meta.get("name", ""), step=step, revision=revision, phase=phase, summary=summary,
        message=message, started=status.get("startTime"), finished=status.get("completionTime"),
    )


def deployment_state(deployment: dict[str, Any]) -> DeploymentState:
    meta = deployment.get("metadata", {})
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = spec.get("replicas", 1)
    template_revision = (
        spec.get("template", {}).get("metadata", {}).get("annotations") or {}
    ).get(REVISION_ANNOTATION)
    # Available means the rollout of the current template finished, not just that some old
    # pod still answers: the controller must have seen this generation and updated every pod.
    current = status.get("observedGeneration", 0) >= meta.get("generation", 1)
    available = bool(
        _condition(deployment, "Available")
        and current
        and status.get("updatedReplicas", 0) >= wanted
        and status.get("availableReplicas", 0) >= wanted
    )
    stuck = next(
        (c for c in status.get("conditions") or []
         if c.get("type") == "Progressing" and c.get("status") == "False"),
        None,
    )
    return DeploymentState(
        name=meta.get("name", ""),
        revision=template_revision,
        available=available,
        failed=stuck is not None,
        message=(stuck or {}).get("message", ""),
    )


def pod_gpus(pods: list[dict[str, Any]]) -> int:
    """GPUs requested by running pods (limits count where requests are not given)."""
    total = 0
    for pod in pods:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod.get("spec", {}).get("containers") or []:
            resources = container.get("resources") or {}
            amount = (resources.get("requests") or {}).get(GPU) or (
                resources.get("limits") or {}).get(GPU)
            if amount:
                total += int(amount)
    return total


def service_state(service: dict[str, Any], pods: list[dict[str, Any]] | None) -> ServiceState:
    meta = service.get("metadata", {})
    spec = service.get("spec", {})
    return ServiceState(
        name=meta.get("name", ""),
        selector=dict(spec.get("selector") or {}),
        ports=list(spec.get("ports") or []),
        annotations=dict(meta.get("annotations") or {}),
        gpus=pod_gpus(pods) if pods else None,
    )
