"""The serving side of a finished revision: which tasks the gateway routes, the objects to
apply, whether the rollout finished, and the cost figures.

    gpusBefore = sum over every task of the GPUs of its old service
    gpusAfter  = GPUs of the unified deployment + those of the tasks that keep their service
    costReduction = 1 - gpusAfter / gpusBefore

A task's old GPUs are, in order: what was recorded when its Service was taken over, what the
pods behind its Service request now, or `baseline.gpus` from the spec.
"""

from __future__ import annotations

from typing import Any

from ..api.results import ExportResult, StepSummary
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from ..prompting import PLAIN, PromptFormat
from ..render import gateway, naming, scaling
from ..render.network import render_inference_network_policy
from ..render.serving import render_inference_deployment, render_inference_service
from ..render.tasks import RoutedTask
from .actions import Absent
from .cutover import original, retired_by
from .observed import Observed


def routed_tasks(
    spec: MultiTaskModelSpec, qualified: list[str], labels: dict[str, list[str]],
    adapters: dict[str, str],
) -> list[RoutedTask]:
    """The qualified tasks as the gateway routes them. Raises ValueError (e.g. a classification
    task whose labels are known neither from the spec nor from prepare)."""
    return [
        RoutedTask.from_task(spec.task(name), labels.get(name), adapters.get(name))
        for name in qualified
    ]


def prompt_format(export: StepSummary) -> tuple[PromptFormat, bool]:
    """The prompt format export reported, or (PLAIN, False) when its result has none."""
    raw = export.result(ExportResult).prompt_format
    if raw is not None and "prefix" in raw and "suffix" in raw:
        return PromptFormat.from_dict(raw), True
    return PLAIN, False


def render_all(
    obs: Observed, spec: MultiTaskModelSpec, revision: str, tasks: list[RoutedTask],
    fmt: PromptFormat, config: OperatorConfig,
) -> list[dict[str, Any]]:
    """Every serving object the spec wants, in the order to apply them: a Deployment before
    the HPA that scales it and the budget that protects it."""
    owner = obs.owner
    configmap = gateway.render_gateway_configmap(owner, spec, revision, tasks, fmt)
    objects = [
        render_inference_deployment(owner, spec, revision, tasks, config),
        render_inference_service(owner),
        render_inference_network_policy(owner, config),
        scaling.render_inference_hpa(owner, spec),
        scaling.render_inference_pdb(owner, spec),
        configmap,
        gateway.render_gateway_deployment(owner, spec, revision, configmap, config),
        gateway.render_gateway_service(owner),
        scaling.render_gateway_hpa(owner, spec),
        gateway.render_gateway_pdb(owner),
    ]
    return [obj for obj in objects if obj is not None]


# The serving objects that a spec may or may not want, by (apiVersion, kind, name).
OPTIONAL = (
    ("networking.k8s.io/v1", "NetworkPolicy", naming.inference_name),
    ("autoscaling/v2", "HorizontalPodAutoscaler", naming.inference_name),
    ("policy/v1", "PodDisruptionBudget", naming.inference_name),
    ("autoscaling/v2", "HorizontalPodAutoscaler", naming.gateway_name),
)


def removals(obs: Observed, rendered: list[dict[str, Any]]) -> list[Absent]:
    """Absent actions for the optional objects that `rendered` leaves out (an HPA after
    serving.autoscaling is turned off, the inference budget once one replica is all, the
    NetworkPolicy once the operator's config turns policies off)."""
    wanted = {(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in rendered}
    out = []
    for api_version, kind, object_name in OPTIONAL:
        key = (api_version, kind, object_name(obs.name))
        if key not in wanted:
            out.append(Absent(*key, owner_uid=obs.uid))
    return out


def replicas(obs: Observed) -> dict[str, int]:
    """status.serving.replicas: the inference Deployment's replica count (the HPA's choice
    with autoscaling), once the Deployment exists."""
    deployment = obs.deployments.get(naming.inference_name(obs.name))
    return {"replicas": deployment.replicas} if deployment is not None else {}


def deployment_names(name: str) -> tuple[str, str]:
    return naming.inference_name(name), naming.gateway_name(name)


def rollout(obs: Observed, revision: str,
            spec: MultiTaskModelSpec) -> tuple[bool, str | None]:
    """(available, failure): both Deployments run `revision` and are available, or why not.

    With autoscaling, the inference Deployment is created without a count (the API server
    makes it 1) and the HPA raises it to minReplicas: until it has, the rollout is not done,
    so that the cutover never lands on fewer replicas than the spec's floor. Once `revision`
    has been deployed (status.serving), a Deployment short of replicas while all its pods run
    the current template is scaling, not rolling out: an HPA adding replicas (which with
    maxUnavailable 0 turns the Deployment's Available condition False until they load) must
    not take the model out of Ready."""
    deployed = (obs.status.get("serving") or {}).get("revision") == revision
    floor, _ = scaling.replica_range(spec)
    available = True
    for deployment_name in deployment_names(obs.name):
        state = obs.deployments.get(deployment_name)
        if state is None or state.revision != revision:
            available = False
            continue
        if state.failed:
            return False, f"Deployment {deployment_name} did not become available: " + (
                state.message or "its rollout passed progressDeadlineSeconds")
        if deployment_name == naming.inference_name(obs.name) and state.replicas < floor:
            available = False  # the HPA has not applied minReplicas yet
            continue
        available = available and (state.available or (deployed and state.scaling))
    return available, None


def task_gpus(obs: Observed, spec: MultiTaskModelSpec) -> dict[str, int]:
    gpus = {}
    for task in spec.tasks:
        count = None
        service = obs.services.get(task.service.name) if task.service else None
        if service is not None:
            record = original(service, obs.name)
            count = record.get("gpus") if record else service.gpus
        gpus[task.name] = count if count is not None else task.baseline.gpus
    return gpus


def retired_gpus(obs: Observed) -> int:
    """GPUs of the old per-task Deployments this model scaled to 0: what is really freed (the
    rest of gpusBefore - gpusAfter could be freed by retiring them)."""
    return sum(int((b.retired or {}).get("replicas") or 0) * b.gpus_per_pod
               for s in obs.services.values() for b in retired_by(s, obs.name))


def unified_gpus(spec: MultiTaskModelSpec) -> int:
    replicas = spec.serving.autoscaling.min_replicas if spec.serving.autoscaling else (
        spec.serving.replicas)
    return replicas * spec.serving.resources.gpus  # the gateway runs on CPU


def cost_figures(obs: Observed, spec: MultiTaskModelSpec, qualified: list[str]) -> dict[str, Any]:
    per_task = task_gpus(obs, spec)
    before = sum(per_task.values())
    after = unified_gpus(spec) + sum(g for t, g in per_task.items() if t not in qualified)
    figures: dict[str, Any] = {"gpusBefore": before, "gpusAfter": after,
                               "gpusRetired": retired_gpus(obs)}
    if before > 0:
        reduction = round(1 - after / before, 4)
        figures["costReduction"] = reduction
        figures["costSaving"] = f"{reduction * 100:.1f}%"
    return figures
