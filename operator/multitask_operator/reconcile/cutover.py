"""Moving a task's existing Service onto the gateway, and putting it back.

Cutover rewrites the Service's selector (to the gateway pods) and its ports' targetPort (to the
gateway's port), so clients keep calling the same name and port. What was there before goes into
the annotation `multitask.ai/cutover` on the Service, with the GPUs its pods requested (the
"before" of the cost figures, which must survive the old pods being scaled away). The
MultiTaskModel lists the Services it took over in its own annotation `multitask.ai/taken-over`,
written before any Service is touched, so that a restart, a deletion or `cutover: Off` finds
every one of them without permission to list Services.

A Service is never taken over when that would lose its way back or take what is not ours
(`refusal`): one another MultiTaskModel has taken over (its record stays untouched), one whose
selector picks some MultiTaskModel's pods (that is no original to record), and, unless the
operator's config turns opt-in off, one that does not opt in with the annotation
`multitask.ai/takeover-by: <model>` (a MultiTaskModel author may repoint only the Services
their owners handed over).
"""

from __future__ import annotations

import json
from typing import Any

from ..render import gateway
from ..render.meta import APP_NAME, selector_labels
from .actions import Patch
from .observed import RETIRED_ANNOTATION, BackendState, ServiceState, elapsed

CUTOVER_ANNOTATION = "multitask.ai/cutover"
TAKEN_OVER_ANNOTATION = "multitask.ai/taken-over"
OPT_IN_ANNOTATION = "multitask.ai/takeover-by"  # names the models allowed, comma-separated


def recorded_model(service: ServiceState) -> str | None:
    """The model whose cutover record the Service carries, if any."""
    raw = service.annotations.get(CUTOVER_ANNOTATION)
    try:
        record = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return "(an unreadable record)"
    if not isinstance(record, dict):
        return "(an unreadable record)" if raw else None
    return str(record.get("model") or "(an unnamed model)")


def refusal(service: ServiceState, model: str, opt_in: bool) -> str | None:
    """Why `model` must not take `service` over, or None."""
    owner = recorded_model(service)
    if owner is not None and owner != model:
        return (f"Service {service.name} is already taken over by MultiTaskModel {owner}; "
                "it stays there (cut it over again once that model gives it back)")
    if service.selector.get("app.kubernetes.io/name") == APP_NAME:
        instance = service.selector.get("app.kubernetes.io/instance", "?")
        return (f"Service {service.name} selects the pods of MultiTaskModel {instance}, not a "
                "per-task backend: there is no original selector to record")
    allowed = {m.strip() for m in service.annotations.get(OPT_IN_ANNOTATION, "").split(",")}
    if opt_in and model not in allowed:
        return (f"Service {service.name} does not opt in: annotate it "
                f"{OPT_IN_ANNOTATION}={model} to let this model take it over")
    return None


def original(service: ServiceState, model: str) -> dict[str, Any] | None:
    """What `model` recorded when it took `service` over; None if it did not take it over."""
    raw = service.annotations.get(CUTOVER_ANNOTATION)
    if not raw:
        return None
    try:
        record = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("model") == model else None


def taken_over_names(annotations: dict[str, str]) -> list[str]:
    raw = annotations.get(TAKEN_OVER_ANNOTATION, "")
    return sorted({n for n in raw.split(",") if n})


def take_over(service: ServiceState, model: str, now: str | None = None) -> Patch:
    target = selector_labels(model, gateway.COMPONENT)
    record = {"model": model, "selector": service.selector, "ports": service.ports,
              "gpus": service.gpus, "since": now}
    # A merge patch merges maps: the old selector keys must be removed explicitly or the
    # Service would select pods carrying both label sets, i.e. none.
    selector: dict[str, Any] = {k: None for k in service.selector if k not in target}
    selector.update(target)
    ports = [{**port, "targetPort": gateway.PORT} for port in service.ports] or [
        {"name": "http", "port": 80, "targetPort": gateway.PORT, "protocol": "TCP"}]
    return Patch("v1", "Service", service.name, {
        "metadata": {"annotations": {CUTOVER_ANNOTATION: json.dumps(record, sort_keys=True)}},
        "spec": {"selector": selector, "ports": ports},
    })


def restore(service: ServiceState, record: dict[str, Any]) -> Patch:
    before = dict(record.get("selector") or {})
    selector: dict[str, Any] = {k: None for k in service.selector if k not in before}
    selector.update(before)
    return Patch("v1", "Service", service.name, {
        "metadata": {"annotations": {CUTOVER_ANNOTATION: None}},
        "spec": {"selector": selector, "ports": record.get("ports") or service.ports},
    })


def is_taken_over(service: ServiceState, model: str) -> bool:
    return original(service, model) is not None


# --------------------------------------------------------------------------- retirement
# With spec.serving.retireOldBackends, the Deployments behind a Service that has served from the
# gateway long enough are scaled to 0, so that the saving is real. The count each had is kept on
# it (multitask.ai/retired), and every way back scales it up first: a restore then waits for a
# ready pod (core._restore_blocker), so clients never land on nothing.


def retire(service: ServiceState, model: str) -> list[Patch]:
    return [Patch("apps/v1", "Deployment", b.name, {
        "metadata": {"annotations": {RETIRED_ANNOTATION: json.dumps(
            {"model": model, "service": service.name, "replicas": b.replicas},
            sort_keys=True)}},
        "spec": {"replicas": 0},
    }) for b in service.backends if b.retired is None and b.replicas > 0]


def retired_by(service: ServiceState, model: str) -> list[BackendState]:
    return [b for b in service.backends if (b.retired or {}).get("model") == model]


def revive(service: ServiceState, model: str) -> list[Patch]:
    """Scale back every Deployment this model retired behind `service`."""
    return [Patch("apps/v1", "Deployment", b.name, {
        "metadata": {"annotations": {RETIRED_ANNOTATION: None}},
        "spec": {"replicas": int((b.retired or {}).get("replicas") or 1)},
    }) for b in retired_by(service, model)]


def held_seconds(record: dict[str, Any], now: str) -> float:
    """How long the Service has been on the gateway (a record without `since`, written by an
    older operator, counts as long ago)."""
    since = record.get("since")
    if not since:
        return float("inf")
    return elapsed(str(since), now)
