"""What the operator saw in the cluster for one MultiTaskModel, parsed from plain API objects.

The k8s layer fetches dicts (the object, its Jobs and their pods, Deployments, the per-task
Services and the pods behind them); the functions here turn them into the small states the
reconcile core decides on. Pure: dicts in, dataclasses out, so every case is unit-testable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.results import ProgressEvent, StepSummary
from ..api.spec import MultiTaskModelSpec
from ..render.jobs import REVISION_LABEL, STEP_ANNOTATION
from ..render.meta import REVISION_ANNOTATION, Owner
from ..render.runtimes import COMPLETION_INDEX

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
    api_version: str = "batch/v1"  # the object running the step: a Job, JobSet or TrainJob
    kind: str = "Job"
    created: str | None = None  # metadata.creationTimestamp (orders revisions for cleanup)


@dataclass(frozen=True)
class DeploymentState:
    name: str
    revision: str | None
    available: bool
    failed: bool = False  # Progressing=False: the rollout gave up (ProgressDeadlineExceeded)
    message: str = ""
    replicas: int = 1  # spec.replicas: what the operator or, with autoscaling, the HPA asks for
    # Every pod runs the current template and some are available, fewer than wanted: replicas
    # being added (an HPA scaling up, a pod evicted), not a rollout.
    scaling: bool = False


@dataclass(frozen=True)
class BackendState:
    """A Deployment whose pods an old per-task Service selected before the cutover."""

    name: str
    replicas: int
    gpus_per_pod: int
    retired: dict[str, Any] | None = None  # the multitask.ai/retired record on it, if any


@dataclass(frozen=True)
class ServiceState:
    name: str
    selector: dict[str, str]
    ports: list[dict[str, Any]]
    annotations: dict[str, str]
    gpus: int | None = None  # GPUs requested by the pods its original selector picks; None: none
    # Ready pods among those its original selector picks (its own backend); None: not known
    # (no selector to list them by).
    ready_backends: int | None = None
    backends: tuple[BackendState, ...] = ()  # Deployments behind the original selector


@dataclass(frozen=True)
class StepCounts:
    """The live comparison of one task in one rollout step, summed over the gateway pods."""

    compared: int = 0
    agreed: int = 0
    unified: int = 0  # answers from the unified model (returned or mirrored)
    unified_errors: int = 0
    legacy: int = 0
    legacy_errors: int = 0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def error_rate(self) -> float | None:
        return self.unified_errors / self.unified if self.unified else None


@dataclass(frozen=True)
class GatewayReport:
    """What the ready gateway pods report on /metrics: the config each serves and the rollout
    counters. Read only while a rollout needs it (k8s/observe.py)."""

    pods: int = 0  # ready gateway pods
    hashes: tuple[str, ...] = ()  # the config hash of each pod that answered
    counts: dict[tuple[str, str], StepCounts] = field(default_factory=dict)  # (task, step)
    problem: str | None = None  # why some pod could not be read

    def serving(self, config_hash: str) -> bool:
        """Whether every ready gateway pod serves the config with `config_hash`."""
        return (self.pods > 0 and self.problem is None and len(self.hashes) == self.pods
                and all(h == config_hash for h in self.hashes))

    def step(self, task: str, step: str) -> StepCounts:
        return self.counts.get((task, step), StepCounts())


def gateway_report(pods: int, scraped: list[str], problems: list[str]) -> GatewayReport:
    """A GatewayReport from the /metrics texts of the ready gateway pods (`problems`: one
    sentence per pod that could not be read)."""
    from prometheus_client.parser import text_string_to_metric_families

    hashes: list[str] = []
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for text in scraped:
        try:
            families = list(text_string_to_metric_families(text))
        except ValueError as error:
            problems = [*problems, f"unreadable metrics: {error}"]
            continue
        for family in families:
            for sample in family.samples:
                labels = sample.labels
                if sample.name == "mtm_gateway_config_info" and sample.value == 1:
                    hashes.append(labels.get("hash", ""))
                    continue
                key = (labels.get("task", ""), labels.get("step", ""))
                if sample.name == "mtm_gateway_rollout_compared_total":
                    field_name = "compared"
                elif sample.name == "mtm_gateway_rollout_agreed_total":
                    field_name = "agreed"
                elif sample.name == "mtm_gateway_rollout_answers_total":
                    side = labels.get("side")
                    if side not in ("unified", "legacy"):
                        continue
                    field_name = side + ("_errors" if labels.get("outcome") == "error" else "")
                    row = totals.setdefault(key, {})
                    row[side] = row.get(side, 0.0) + sample.value  # every answer, errors too
                    if field_name == side:
                        continue
                else:
                    continue
                row = totals.setdefault(key, {})
                row[field_name] = row.get(field_name, 0.0) + sample.value
    counts = {key: StepCounts(**{k: int(v) for k, v in row.items()})
              for key, row in totals.items()}
    return GatewayReport(pods=pods, hashes=tuple(hashes), counts=counts,
                         problem="; ".join(problems) or None)


@dataclass
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    # The spec validated once, by whoever observed it (None: not validated, or invalid).
    spec_model: MultiTaskModelSpec | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    jobs: list[JobState] = field(default_factory=list)
    pvc_exists: bool = False
    configmaps: set[str] = field(default_factory=set)  # names of the spec ConfigMaps present
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    services: dict[str, ServiceState] = field(default_factory=dict)  # per-task Services found
    progress: ProgressEvent | None = None  # latest progress line of the running step
    # Optional training runtimes whose APIs the cluster serves ("jobset", "kubeflow"); None:
    # not looked up (the spec's runtime is built in).
    served_runtimes: frozenset[str] | None = None
    # The gateway pods' config and rollout counters; None: not read (no rollout needs them).
    gateway: GatewayReport | None = None

    @property
    def owner(self) -> Owner:
        """The model as the renderers take it: what its objects are named after and owned by."""
        return Owner(self.name, self.namespace, self.uid)
    now: str = ""  # RFC 3339, for condition transition times

    def job(self, step: str, revision: str) -> JobState | None:
        return next((j for j in self.jobs if j.step == step and j.revision == revision), None)


def elapsed(since: str, now: str) -> float:
    """Seconds from `since` to `now`, both RFC 3339 UTC as the observer writes them."""
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.strptime(now, fmt) - datetime.strptime(since, fmt)).total_seconds()


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def parse_summary(text: str | None) -> StepSummary | None:
    if not text:
        return None
    try:
        return StepSummary.model_validate(json.loads(text))
    except (json.JSONDecodeError, ValidationError, TypeError):
        return None


def rank0(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods of node 0 of a multi-node step (completion index 0), which carry the trainer's
    summary; pods of a single-pod Job have no index and are all kept."""
    def index(pod: dict[str, Any]) -> str | None:
        meta = pod.get("metadata", {})
        return ((meta.get("labels") or {}).get(COMPLETION_INDEX)
                or (meta.get("annotations") or {}).get(COMPLETION_INDEX))
    return [p for p in pods if index(p) in (None, "0")]


def termination_message(pods: list[dict[str, Any]]) -> str | None:
    """The termination message of the newest pod that has one (the last attempt): node 0's
    (the trainer's summary), else any node's (one that crashed first, before node 0 wrote)."""
    for group in (rank0(pods), pods):
        newest = sorted(group, key=lambda p: p.get("metadata", {}).get("creationTimestamp") or "")
        for pod in reversed(newest):
            for status in pod.get("status", {}).get("containerStatuses") or []:
                terminated = (status.get("state") or {}).get("terminated") or {}
                if terminated.get("message"):
                    return str(terminated["message"])
    return None


def job_state(job: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """The state of a trainer Job; `pods` are its pods (read only once the Job has finished)."""
    status = job.get("status", {})
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
    return _step_state(job, phase, failed, pods, status.get("startTime"),
                       status.get("completionTime"))


def jobset_state(obj: dict[str, Any], pods: list[dict[str, Any]]) -> JobState:
    """The state of a JobSet (jobset.x-k8s.io) or a Kubeflow TrainJob (whose JobSet it mirrors):
    conditions Completed/Complete, Failed, Suspended; running while a child Job is active."""
    status = obj.get("status", {})
    failed = _condition(obj, "Failed")
    done = _condition(obj, "Completed") or _condition(obj, "Complete")
    children = status.get("replicatedJobsStatus") or status.get("jobsStatus") or []
    if done:
        phase = SUCCEEDED
    elif failed:
        phase = FAILED
    elif obj.get("spec", {}).get("suspend") or _condition(obj, "Suspended"):
        phase = SUSPENDED
    elif any(c.get("active") or c.get("ready") for c in children):
        phase = RUNNING
    else:
        phase = PENDING
    started = obj.get("metadata", {}).get("creationTimestamp")
    finished = (done or failed or {}).get("lastTransitionTime")
    return _step_state(obj, phase, failed, pods, started, finished)


def _step_state(obj: dict[str, Any], phase: str, failed: dict[str, Any] | None,
                pods: list[dict[str, Any]], started: str | None,
                finished: str | None) -> JobState:
    meta = obj.get("metadata", {})
    annotations = meta.get("annotations") or {}
    step = annotations.get(STEP_ANNOTATION, "")
    revision = annotations.get(REVISION_ANNOTATION) or (meta.get("labels") or {}).get(
        REVISION_LABEL, "")
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
        message=message, started=started, finished=finished,
        api_version=obj.get("apiVersion") or "batch/v1", kind=obj.get("kind") or "Job",
        created=meta.get("creationTimestamp"),
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
        replicas=wanted,
        scaling=bool(current and stuck is None and status.get("availableReplicas", 0) >= 1
                     and status.get("updatedReplicas", 0) == status.get("replicas", 0)),
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


RETIRED_ANNOTATION = "multitask.ai/retired"


def backend_state(deployment: dict[str, Any]) -> BackendState:
    meta, spec = deployment.get("metadata", {}), deployment.get("spec", {})
    template = spec.get("template") or {}
    record = None
    raw = (meta.get("annotations") or {}).get(RETIRED_ANNOTATION)
    if raw:
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            record = None
    return BackendState(
        name=meta.get("name", ""),
        replicas=int(spec.get("replicas", 1)),
        gpus_per_pod=pod_gpus([{"spec": template.get("spec") or {}}]),
        retired=record if isinstance(record, dict) else None,
    )


def selects(selector: dict[str, str], deployment: dict[str, Any]) -> bool:
    """Whether `selector` (a Service's) picks the pods of `deployment`."""
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get(
        "labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def service_state(service: dict[str, Any], pods: list[dict[str, Any]] | None,
                  deployments: list[dict[str, Any]] | None = None,
                  selector: dict[str, str] | None = None) -> ServiceState:
    meta = service.get("metadata", {})
    spec = service.get("spec", {})
    return ServiceState(
        name=meta.get("name", ""),
        selector=dict(spec.get("selector") or {}),
        ports=list(spec.get("ports") or []),
        annotations=dict(meta.get("annotations") or {}),
        gpus=pod_gpus(pods) if pods else None,
        ready_backends=None if pods is None else sum(1 for p in pods if _pod_ready(p)),
        backends=tuple(backend_state(d) for d in deployments or []
                       if selects(selector or {}, d)),
    )


def _pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])
