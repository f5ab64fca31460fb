"""Read the gateway pods' /metrics during a handover (spec.serving.rollout).

Each ready gateway pod is asked directly (its counters are its own; a Service would answer from
one pod at random), at the operator's MTM_GATEWAY_METRICS_URL with `{ip}` the pod's IP. A pod
that does not answer within a few seconds is named in the report's `problem`, and the rollout
waits rather than decide on part of the traffic.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from ..reconcile.observed import GatewayReport, gateway_report
from ..render import gateway
from ..render.meta import selector_labels
from .client import Client

TIMEOUT_S = 5.0


def _ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in status.get("conditions") or [])


async def gateway_metrics(client: Client, namespace: str, model: str,
                          url_template: str) -> GatewayReport:
    pods = [p for p in await client.list("v1", "Pod", namespace,
                                         selector_labels(model, gateway.COMPONENT)) if _ready(p)]
    texts: list[str] = []
    problems: list[str] = []
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for pod in pods:
            url = url_template.format(ip=pod["status"]["podIP"])
            name = pod["metadata"]["name"]
            try:
                async with session.get(url) as response:
                    if response.status != 200:
                        problems.append(f"gateway pod {name} answered {response.status} on {url}")
                        continue
                    texts.append(await response.text())
            except (aiohttp.ClientError, TimeoutError) as error:
                problems.append(f"gateway pod {name} did not answer on {url}: "
                                f"{type(error).__name__} {error}".rstrip())
    if not pods:
        problems.append("no gateway pod is ready")
    return gateway_report(len(pods), texts, problems)
