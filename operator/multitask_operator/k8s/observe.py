"""Gather the `Observed` of one MultiTaskModel: its Jobs, workspace, serving objects, Services.

Reads only (get and list, and the tail of the running trainer's log for progress). The result
of a finished Job never changes, so its parsed state is cached by the Job's uid: a reconcile of
a model whose steps are done reads no pods again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..api.common import Runtime
from ..api.resource import KIND
from ..api.results import ProgressEvent, parse_progress_line
from ..api.spec import MultiTaskModelSpec
from ..reconcile import Observed
from ..reconcile.cutover import original, taken_over_names
from ..reconcile.handover import active
from ..reconcile.observed import (
    FAILED,
    RUNNING,
    SUCCEEDED,
    JobState,
    deployment_state,
    job_state,
    jobset_state,
    rank0,
    service_state,
)
from ..reconcile.revision import current_revision
from ..render import naming, runtimes
from ..render import pod as trainer_pod
from ..render.meta import MODEL_LABEL
from .client import Client
from .discovery import Discovery
from .scrape import gateway_metrics

JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"  # on the pods of a JobSet (and a TrainJob)
LOG_LINES = 40  # the trainer logs one progress line per few steps; 40 lines always hold one


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Observer:
    def __init__(self, client: Client, metrics_url: str = "http://{ip}:8080/metrics"):
        self.client = client
        self.metrics_url = metrics_url  # a gateway pod's /metrics (k8s/scrape.py)
        self._finished: dict[str, JobState] = {}  # Job uid -> final state
        self.timed: set[tuple[str, str]] = set()  # (Job, completion) already in the metrics
        self.discovery = Discovery()
        # Deployments by namespace, listed at most once per observation (reset by observe()).
        self._deployments: dict[str, list[dict[str, Any]]] = {}

    async def _pods(self, namespace: str, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods of a step's Job, JobSet or TrainJob (whose JobSet has its name)."""
        if obj.get("kind", "Job") == "Job":
            labels = {JOB_UID_LABEL: obj["metadata"].get("uid", "")}
        else:
            labels = {JOBSET_NAME_LABEL: obj["metadata"]["name"]}
        return await self.client.list("v1", "Pod", namespace, labels)

    async def _job(self, namespace: str, job: dict[str, Any]) -> JobState:
        uid = job["metadata"].get("uid", "")
        if uid in self._finished:
            return self._finished[uid]
        parse = job_state if job.get("kind", "Job") == "Job" else jobset_state
        state = parse(job, [])
        if state.phase in (SUCCEEDED, FAILED):
            state = parse(job, await self._pods(namespace, job))
            if uid:
                self._finished[uid] = state
        return state

    async def _progress(self, namespace: str, job: dict[str, Any]) -> ProgressEvent | None:
        pods = rank0(await self._pods(namespace, job))
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        if not running:
            return None
        text = await self.client.log_tail(namespace, running[-1]["metadata"]["name"],
                                          trainer_pod.CONTAINER, LOG_LINES)
        events = [e for e in map(parse_progress_line, text.splitlines()) if e is not None]
        return events[-1] if events else None

    async def observe(self, body: Mapping[str, Any]) -> Observed:
        self._deployments = {}
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        obs = Observed(
            name=name, namespace=namespace, uid=meta.get("uid", ""),
            generation=int(meta.get("generation") or 1), spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}), annotations=dict(meta.get("annotations") or {}),
            now=now(),
        )
        try:
            spec = MultiTaskModelSpec.model_validate(obs.spec)
        except ValidationError:
            # The core reports the spec. The Services it took over are still read, from its
            # annotation alone: a deletion or `cutover: Off` must restore them whatever the
            # spec says now.
            for service_name in taken_over_names(obs.annotations):
                await self._service(obs, service_name)
            return obs
        obs.spec_model = spec
        revision = current_revision(spec, obs.status, obs.annotations)
        c = self.client
        raw_jobs = await self._step_objects(obs, spec)
        obs.jobs = [await self._job(namespace, j) for j in raw_jobs]
        for raw, state in zip(raw_jobs, obs.jobs, strict=True):
            if state.phase == RUNNING and state.revision == revision:
                obs.progress = await self._progress(namespace, raw)
        if not spec.training.workspace.claim_name:
            obs.pvc_exists = await c.get("v1", "PersistentVolumeClaim", namespace,
                                         naming.workspace_name(name)) is not None
        configmap = trainer_pod.spec_configmap_name(name, revision)
        if await c.get("v1", "ConfigMap", namespace, configmap) is not None:
            obs.configmaps.add(configmap)
        for deployment_name in (naming.inference_name(name), naming.gateway_name(name)):
            deployment = await c.get("apps/v1", "Deployment", namespace, deployment_name)
            if deployment is not None:
                obs.deployments[deployment_name] = deployment_state(deployment)
        await self._services(obs, spec)
        if naming.gateway_name(name) in obs.deployments and (active(spec) or any(
                row.get("rollout") for row in obs.status.get("tasks") or [])):
            obs.gateway = await gateway_metrics(c, namespace, name, self.metrics_url)
        return obs

    async def _step_objects(self, obs: Observed, spec: MultiTaskModelSpec) -> list[dict]:
        """The Jobs the model owns (not the child Jobs of its JobSets, which carry its labels),
        and its JobSets or TrainJobs when the spec's runtime is one the cluster serves."""
        found = await self.client.list("batch/v1", "Job", obs.namespace, {MODEL_LABEL: obs.name})
        found = [j for j in found if _owned(j)]
        runtime = spec.training.runtime
        optional = runtime in runtimes.OPTIONAL_RUNTIMES
        # Looked up at the first reconcile after start, then only while a runtime is missing.
        obs.served_runtimes = await self.discovery.served(
            self.client, str(runtime) if optional else None)
        if optional and str(runtime) in obs.served_runtimes:
            api_version, kind = runtimes.KINDS[Runtime(runtime)]
            items = await self.client.list(api_version, kind, obs.namespace,
                                           {MODEL_LABEL: obs.name})
            # A list's items carry no apiVersion and kind; the parsers need them.
            found += [{"apiVersion": api_version, "kind": kind, **o} for o in items]
        return [o for o in found if not o["metadata"].get("deletionTimestamp")]

    async def _services(self, obs: Observed, spec: MultiTaskModelSpec) -> None:
        names = {t.service.name for t in spec.tasks if t.service}
        names |= set(taken_over_names(obs.annotations))
        for service_name in sorted(names):
            await self._service(obs, service_name)

    async def _service(self, obs: Observed, service_name: str) -> None:
        raw = await self.client.get("v1", "Service", obs.namespace, service_name)
        if raw is None:
            return
        state = service_state(raw, None)
        record = original(state, obs.name)
        # The GPUs of a Service are those of the pods it selected before any cutover.
        labels = (record or {}).get("selector") or state.selector
        pods = await self.client.list("v1", "Pod", obs.namespace, labels) if labels else None
        # The Deployments behind a taken-over Service (for retiring and reviving them).
        deployments = None
        if record is not None and labels:
            if obs.namespace not in self._deployments:
                self._deployments[obs.namespace] = await self.client.list(
                    "apps/v1", "Deployment", obs.namespace)
            deployments = self._deployments[obs.namespace]
        obs.services[service_name] = service_state(raw, pods, deployments, labels)


def _owned(obj: dict[str, Any]) -> bool:
    """Whether a MultiTaskModel owns `obj` directly (a JobSet's child Job is owned by it)."""
    owners = obj["metadata"].get("ownerReferences") or []
    return not owners or any(ref.get("kind") == KIND for ref in owners)


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any] | None:
    """A merge patch from `old` to `new` status (dropped keys become null), None if equal."""
    if json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True):
        return None
    patch: dict[str, Any] = dict(new)
    patch.update({k: None for k in old if k not in new})
    return patch
