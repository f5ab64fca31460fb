"""The NetworkPolicy of a model's inference pods: only its gateway reaches them.

Without it, any pod of the cluster could call the inference server directly and skip what the
gateway enforces (labels, limits, per-task access). The engines serve their Prometheus metrics
on the same port, so the namespace the operator config names for monitoring (MTM_METRICS_NAMESPACE,
default "monitoring"; empty: none) may reach it too. Off (MTM_NETWORK_POLICY=false) for clusters
without a policy engine, where the object would be accepted and do nothing.
"""

from __future__ import annotations

from typing import Any

from ..config import OperatorConfig
from . import gateway, naming, serving
from .meta import Owner, object_meta, selector_labels


def render_inference_network_policy(
    owner: Owner, config: OperatorConfig
) -> dict[str, Any] | None:
    name = owner.name
    if not config.network_policy:
        return None
    port = [{"protocol": "TCP", "port": serving.PORT}]
    ingress: list[dict[str, Any]] = [{
        "from": [{"podSelector": {"matchLabels": selector_labels(name, gateway.COMPONENT)}}],
        "ports": port,
    }]
    if config.metrics_namespace:
        ingress.append({
            "from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": config.metrics_namespace}}}],
            "ports": port,
        })
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(naming.inference_name(name), owner, serving.COMPONENT),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name, serving.COMPONENT)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }
