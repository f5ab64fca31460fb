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

from ..api.results import StepSummary
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from ..prompting import PLAIN, PromptFormat
from ..render import gateway, naming
from ..render.serving import render_inference_deployment, render_inference_service
from ..render.tasks import RoutedTask
from .cutover import original
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
    raw = export.details.get("promptFormat")
    if isinstance(raw, dict) and "prefix" in raw and "suffix" in raw:
        return PromptFormat.from_dict(raw), True
    return PLAIN, False


def render_all(
    obs: Observed, spec: MultiTaskModelSpec, revision: str, tasks: list[RoutedTask],
    fmt: PromptFormat, config: OperatorConfig,
) -> list[dict[str, Any]]:
    name, ns, uid = obs.name, obs.namespace, obs.uid
    configmap = gateway.render_gateway_configmap(name, ns, uid, spec, revision, tasks, fmt)
    return [
        render_inference_deployment(name, ns, uid, spec, revision, tasks, config),
        render_inference_service(name, ns, uid),
        configmap,
        gateway.render_gateway_deployment(name, ns, uid, spec, revision, configmap, config),
        gateway.render_gateway_service(name, ns, uid),
        gateway.render_gateway_pdb(name, ns, uid),
    ]


def deployment_names(name: str) -> tuple[str, str]:
    return naming.inference_name(name), naming.gateway_name(name)


def rollout(obs: Observed, revision: str) -> tuple[bool, str | None]:
    """(available, failure): both Deployments run `revision` and are available, or why not."""
    available = True
    for deployment_name in deployment_names(obs.name):
        state = obs.deployments.get(deployment_name)
        if state is None or state.revision != revision:
            available = False
            continue
        if state.failed:
            return False, f"Deployment {deployment_name} did not become available: " + (
                state.message or "its rollout passed progressDeadlineSeconds")
        available = available and state.available
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


def unified_gpus(spec: MultiTaskModelSpec) -> int:
    replicas = spec.serving.autoscaling.min_replicas if spec.serving.autoscaling else (
        spec.serving.replicas)
    return replicas * spec.serving.resources.gpus  # the gateway runs on CPU


def cost_figures(obs: Observed, spec: MultiTaskModelSpec, qualified: list[str]) -> dict[str, Any]:
    per_task = task_gpus(obs, spec)
    before = sum(per_task.values())
    after = unified_gpus(spec) + sum(g for t, g in per_task.items() if t not in qualified)
    figures: dict[str, Any] = {"gpusBefore": before, "gpusAfter": after}
    if before > 0:
        reduction = round(1 - after / before, 4)
        figures["costReduction"] = reduction
        figures["costSaving"] = f"{reduction * 100:.1f}%"
    return figures
