"""The Service that keeps a task's old backend reachable while its traffic is handed over.

At cutover the task's own Service is repointed to the gateway; during a Shadow or Canary
rollout (spec.serving.rollout) the gateway still sends part of the requests to the old pods,
through this Service: the original selector and ports, owned by the MultiTaskModel (so that
deleting the model removes it) and removed once the task is promoted.
"""

from __future__ import annotations

from typing import Any

from . import naming
from .meta import Owner, object_meta

COMPONENT = "legacy"


def _ports(ports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("name", "port", "targetPort", "protocol")
    kept: list[dict[str, Any]] = [{k: p[k] for k in keys if k in p} for p in ports
                                  if p.get("port")]
    return kept or [{"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"}]


def render_legacy_service(owner: Owner, task: str, selector: dict[str, str],
                          ports: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(naming.legacy_name(owner.name, task), owner, COMPONENT),
        "spec": {"type": "ClusterIP", "selector": dict(selector), "ports": _ports(ports)},
    }


def legacy_url(owner: Owner, task: str, ports: list[dict[str, Any]]) -> str:
    """Where the gateway reaches the old backend: the first port of the original Service (a
    Service with several ports is handed over on its first)."""
    port = _ports(ports)[0]["port"]
    return f"http://{naming.legacy_name(owner.name, task)}.{owner.namespace}.svc:{port}"
