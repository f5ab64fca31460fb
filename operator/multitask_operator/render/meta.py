"""Metadata shared by every rendered object: labels, selectors and the ownerReference.

Selectors use only labels that never change for the life of a MultiTaskModel (a Deployment's
selector is immutable), so a new training revision rolls pods instead of failing the update.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.resource import API_VERSION, KIND

APP_NAME = "multitask-model"
MANAGED_BY = "multitask-operator"
MODEL_LABEL = "multitask.ai/model"
REVISION_ANNOTATION = "multitask.ai/revision"


def selector_labels(name: str, component: str) -> dict[str, str]:
    """Labels that pick the pods of one component of one MultiTaskModel."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
    }


def labels(name: str, component: str) -> dict[str, str]:
    """Every label an object of `component` carries."""
    return {
        **selector_labels(name, component),
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MODEL_LABEL: name,
    }


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """Makes the object garbage-collected with its MultiTaskModel."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass(frozen=True)
class Owner:
    """The MultiTaskModel whose objects are being rendered: they are named after it, live in its
    namespace and carry an ownerReference to its uid."""

    name: str
    namespace: str
    uid: str


def object_meta(
    object_name: str,
    owner: Owner,
    component: str,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": object_name,
        "namespace": owner.namespace,
        "labels": labels(owner.name, component),
        "ownerReferences": [owner_reference(owner.name, owner.uid)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def http_probe(path: str, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def cluster_ip_service(object_name: str, owner: Owner, component: str) -> dict[str, Any]:
    """A ClusterIP Service on port 80 in front of the `http` port of one component's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(object_name, owner, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner.name, component),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def scrape_annotations(port: int) -> dict[str, str]:
    """Pod annotations that point a Prometheus scrape at `port`'s /metrics."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics"}


def rolling_deployment(
    object_name: str, owner: Owner, component: str, revision: str,
    pod_annotations: dict[str, str], pod_spec: dict[str, Any], replicas: int | None,
) -> dict[str, Any]:
    """A Deployment of one component that keeps every old pod serving until a new one is ready
    (maxSurge 1, maxUnavailable 0: a rollout needs room for one extra pod, GPUs included).

    `replicas` None leaves the count out: a HorizontalPodAutoscaler owns it, and writing it here
    would reset the HPA's choice on every reconcile (k8s/apply.py applies the count the cluster
    has instead, so that turning autoscaling on never drops the Deployment to one replica;
    turning it off sets the spec's count again)."""
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner.name, component)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {"labels": labels(owner.name, component),
                         "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(object_name, owner, component,
                                annotations={REVISION_ANNOTATION: revision}),
        "spec": deployment_spec,
    }
