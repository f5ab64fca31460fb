"""Metadata shared by every rendered object: labels, selectors and the ownerReference.

Selectors use only labels that never change for the life of a MultiTaskModel (a Deployment's
selector is immutable), so a new training revision rolls pods instead of failing the update.
"""

from __future__ import annotations

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


def object_meta(
    object_name: str,
    namespace: str,
    owner: str,
    uid: str,
    component: str,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": object_name,
        "namespace": namespace,
        "labels": labels(owner, component),
        "ownerReferences": [owner_reference(owner, uid)],
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


def cluster_ip_service(
    object_name: str, namespace: str, owner: str, uid: str, component: str
) -> dict[str, Any]:
    """A ClusterIP Service on port 80 in front of the `http` port of one component's pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(object_name, namespace, owner, uid, component),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, component),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
