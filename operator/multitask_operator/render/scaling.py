"""Scaling of the serving objects: HorizontalPodAutoscalers, PodDisruptionBudgets and the
topology spread of the inference and gateway pods.

    from multitask_operator.render import scaling
    hpa = scaling.render_inference_hpa(owner, spec)    # None without serving.autoscaling
    pdb = scaling.render_inference_pdb(owner, spec)    # None when one replica is all

Pure: spec in, plain dicts out. The choices, and why (docs/serving.md "Scaling" says the same):

- The inference HPA scales on the engine's queue (requests waiting for a batch slot), read per
  pod through the custom metrics API (`custom.metrics.k8s.io`, served by prometheus-adapter or
  KEDA). Queue length, unlike GPU utilisation, rises only when replicas are short. The names
  are in `QUEUE_METRICS`, the one place that knows them.
- A replica takes minutes to come up (weights onto the GPU), so the HPA waits a minute of
  sustained queue before it adds replicas, and ten minutes of quiet before it removes one, one
  at a time: a replica given back and re-created within ten minutes costs more than it saves.
- The gateway is a light async proxy: an HPA on CPU (70% of its 100m request) between 2 and
  max(2, autoscaling.maxReplicas) pods, rendered only with serving.autoscaling (a cluster that
  runs no metrics pipeline keeps its fixed 2 replicas).
- PodDisruptionBudgets follow the HPA's replica count (a fixed `minAvailable: 1` would let a
  drain take all but one of ten pods at once). Inference: `maxUnavailable: 1`, one GPU replica
  down at a time, since each is slow to come back and holds a share of the capacity. An
  inference Deployment that never has more than one replica gets none: a budget could then
  only block every node drain (minAvailable 1) or allow the eviction anyway (maxUnavailable 1).
  Gateway: `minAvailable: 50%` (one of two, half of more): its pods start in seconds, and the
  key is the one earlier versions set, so a merge patch updates it (a budget may not have both
  keys). Pods that are not ready may always be evicted, so that a pod stuck loading (or
  crash-looping) never blocks a drain.
- Pods spread over nodes and zones as a preference (`ScheduleAnyway`): a cluster with a single
  GPU node, or one zone, must still schedule every replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.common import Engine
from ..api.spec import MultiTaskModelSpec
from . import naming
from .meta import Owner, object_meta, selector_labels

INFERENCE, GATEWAY = "inference", "gateway"  # the components (render.serving / render.gateway)

GATEWAY_MIN_REPLICAS = 2  # a node drain (minAvailable 50%) leaves a gateway pod serving
GATEWAY_CPU_UTILIZATION = 70  # percent of the gateway container's CPU request
GATEWAY_MIN_AVAILABLE = "50%"  # of the gateway pods the Deployment (or its HPA) wants
SCALE_UP_WINDOW_S = 60  # a queue must last this long before replicas are added
SCALE_DOWN_WINDOW_S = 600  # ... and be gone this long before one is removed


@dataclass(frozen=True)
class QueueMetric:
    """The engine's Prometheus gauge of waiting requests, and the name under which the custom
    metrics API serves it (that API's names cannot hold ':', so vLLM's is renamed by the
    prometheus-adapter rule in docs/serving.md)."""

    engine_metric: str
    custom_metric: str


QUEUE_METRICS: dict[Engine, QueueMetric] = {
    Engine.TGI: QueueMetric("tgi_queue_size", "tgi_queue_size"),
    Engine.VLLM: QueueMetric("vllm:num_requests_waiting", "vllm_num_requests_waiting"),
}


def replica_range(spec: MultiTaskModelSpec) -> tuple[int, int]:
    """(fewest, most) inference replicas the spec allows."""
    scaling = spec.serving.autoscaling
    if scaling is None:
        return spec.serving.replicas, spec.serving.replicas
    return scaling.min_replicas, scaling.max_replicas


def quantity(value: float) -> int | str:
    """A Kubernetes quantity: whole numbers as they are, fractions in thousandths ("2500m")."""
    if float(value).is_integer():
        return int(value)
    return f"{max(1, round(value * 1000))}m"


def topology_spread(name: str, component: str) -> list[dict[str, Any]]:
    """Spread one component's pods over nodes, then zones; a preference, never a blocker.

    `pod-template-hash` counts each ReplicaSet apart, so that the old pods of a rollout do not
    push the new ones onto the nodes they are about to leave."""
    selector = {"matchLabels": selector_labels(name, component)}
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
            "matchLabelKeys": ["pod-template-hash"],
        }
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
    ]


def _hpa(owner: Owner, component: str, target: str, low: int, high: int,
         metric: dict[str, Any], behavior: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": [metric],
    }
    if behavior:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(target, owner, component),
        "spec": spec,
    }


def render_inference_hpa(owner: Owner,
                         spec: MultiTaskModelSpec) -> dict[str, Any] | None:
    """Scales NAME-inference on the engine's queue per pod; None without serving.autoscaling."""
    name = owner.name
    scaling = spec.serving.autoscaling
    if scaling is None:
        return None
    metric = {
        "type": "Pods",
        "pods": {
            "metric": {"name": QUEUE_METRICS[spec.serving.engine].custom_metric},
            "target": {"type": "AverageValue",
                       "averageValue": quantity(scaling.target_queue_size)},
        },
    }
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": SCALE_UP_WINDOW_S,
            # At most double, or two more, per minute: the queue of a replica that is still
            # loading is not yet relieved, and this keeps that from adding replicas without end.
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60},
                         {"type": "Pods", "value": 2, "periodSeconds": 60}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_S,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 120}],
        },
    }
    target = naming.inference_name(name)
    return _hpa(owner, INFERENCE, target, scaling.min_replicas,
                scaling.max_replicas, metric, behavior)


def gateway_replica_range(spec: MultiTaskModelSpec) -> tuple[int, int]:
    """(fewest, most) gateway pods: 2, up to one per inference replica at the most."""
    _, most = replica_range(spec)
    return GATEWAY_MIN_REPLICAS, max(GATEWAY_MIN_REPLICAS, most)


def render_gateway_hpa(owner: Owner,
                       spec: MultiTaskModelSpec) -> dict[str, Any] | None:
    """Scales NAME-gateway on CPU; None without serving.autoscaling (fixed 2 replicas)."""
    name = owner.name
    if spec.serving.autoscaling is None:
        return None
    low, high = gateway_replica_range(spec)
    metric = {
        "type": "Resource",
        "resource": {
            "name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": GATEWAY_CPU_UTILIZATION},
        },
    }
    return _hpa(owner, GATEWAY, naming.gateway_name(name), low, high, metric)


def pod_disruption_budget(owner: Owner, component: str,
                          object_name: str, budget: dict[str, Any]) -> dict[str, Any]:
    """The component's pods under `budget` ({"maxUnavailable": ...} or {"minAvailable": ...});
    pods that are not ready may always be evicted."""
    name = owner.name
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(object_name, owner, component),
        "spec": {
            **budget,
            "selector": {"matchLabels": selector_labels(name, component)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def render_inference_pdb(owner: Owner,
                         spec: MultiTaskModelSpec) -> dict[str, Any] | None:
    """The inference budget, or None when the spec never runs more than one replica."""
    name = owner.name
    _, most = replica_range(spec)
    if most < 2:
        return None
    return pod_disruption_budget(owner, INFERENCE, naming.inference_name(name),
                                 {"maxUnavailable": 1})
