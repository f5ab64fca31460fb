"""The rollout of every task of one model (spec.serving.rollout), for the reconcile core: the
per-task decisions of rollout.py, the gateway routes they need, the Services that keep the old
backends reachable, and when a Service may move.

Order of a handover, so that no request lands on nothing:
1. the task's route (old backend, weight, step) goes into the gateway config and the Service
   `<model>-old-<task>` (the original selector and ports) is created;
2. the task's own Service is taken over only once every ready gateway pod reports that config
   (its hash in mtm_gateway_config_info);
3. the phases move the weight; a rollback sends everything to the old backend (weight 0) and
   restores the Service; the route and the old-backend Service stay while the task is rolled
   back, for clients whose connections still reach the gateway;
4. after promotion the route goes, and the old-backend Service is deleted once every gateway pod
   serves the config without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..api.common import Cutover, RolloutStrategy
from ..api.gateway_config import RolloutRoute, wire_hash
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from ..render import gateway, legacy, naming
from . import cutover, rollout
from .actions import Absent, Action, Apply, Event
from .observed import Observed, ServiceState
from .table import OWN_SERVICE, UNIFIED


@dataclass
class Handover:
    decisions: dict[str, rollout.TaskDecision] = field(default_factory=dict)

    def route(self, task: str) -> RolloutRoute | None:
        decision = self.decisions.get(task)
        return decision.route if decision else None

    @property
    def rolled_back(self) -> set[str]:
        return {t for t, d in self.decisions.items() if d.rolled_back}

    @property
    def events(self) -> list[Event]:
        return [e for d in self.decisions.values() for e in d.events]

    @property
    def requeue(self) -> float | None:
        waits = [d.requeue for d in self.decisions.values() if d.requeue is not None]
        return min(waits) if waits else None

    def old_backends_serving(self, spec: MultiTaskModelSpec) -> set[str]:
        """Services whose old pods may still get requests (never retired meanwhile)."""
        return {t.service.name for t in spec.tasks if t.service and t.name in self.decisions
                and self.decisions[t.name].needs_old_backend}

    def promoted_for(self, spec: MultiTaskModelSpec, service: str, now: str) -> float | None:
        """Seconds since the task behind `service` was promoted, if it was handed over by a
        rollout (retirement counts from the promotion, not from the cutover)."""
        for task in spec.tasks:
            decision = self.decisions.get(task.name)
            if task.service and task.service.name == service and decision is not None:
                return rollout.seconds_since(decision.status.since, now)
        return None

    def served_by(self, task: str, default: str) -> str:
        decision = self.decisions.get(task)
        if decision is None or default != UNIFIED:
            return default
        status = decision.status
        if status.state in (rollout.SHADOW, rollout.ROLLED_BACK, rollout.PENDING):
            return f"{OWN_SERVICE} ({status.state.lower()})"
        if status.state == rollout.CANARY:
            return f"{UNIFIED} {status.weight}%, {OWN_SERVICE} {100 - status.weight}%"
        return default


def active(spec: MultiTaskModelSpec) -> bool:
    return (spec.serving.rollout.strategy != RolloutStrategy.IMMEDIATE
            and spec.serving.cutover != Cutover.OFF)


def _original(service: ServiceState, model: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """The selector and ports of the task's own backend (before any cutover)."""
    record = cutover.original(service, model)
    if record is None:
        return dict(service.selector), list(service.ports)
    return dict(record.get("selector") or {}), list(record.get("ports") or service.ports)


def plan(obs: Observed, spec: MultiTaskModelSpec, revision: str, qualified: list[str],
         config: OperatorConfig) -> Handover:
    """The rollout decision of every qualified task with a Service that may be taken over."""
    out = Handover()
    if not active(spec):
        return out
    prev_rows = {row.get("name"): row for row in obs.status.get("tasks") or []}
    for task in spec.tasks:
        if not task.service or task.name not in qualified:
            continue
        service = obs.services.get(task.service.name)
        if service is None:
            continue
        taken = cutover.is_taken_over(service, obs.name)
        if not taken and cutover.refusal(service, obs.name, config.service_opt_in):
            continue  # never taken over: nothing to hand over (the core reports why)
        _, ports = _original(service, obs.name)
        out.decisions[task.name] = rollout.decide(
            task.name, spec.serving.rollout, revision,
            rollout.previous(prev_rows.get(task.name)), taken, obs.gateway,
            legacy.legacy_url(obs.owner, task.name, ports), obs.now)
    return out


def rendered_hash(objects: list[dict[str, Any]], model: str) -> str | None:
    """The hash of the gateway config among the rendered serving objects."""
    for obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == (
                naming.gateway_config_name(model)):
            return wire_hash(json.loads(obj["data"][gateway.CONFIG_KEY]))
    return None


def gateway_ready(obs: Observed, objects: list[dict[str, Any]]) -> bool:
    """Whether every ready gateway pod serves the config rendered now."""
    config_hash = rendered_hash(objects, obs.name)
    return obs.gateway is not None and config_hash is not None and obs.gateway.serving(
        config_hash)


def legacy_actions(obs: Observed, spec: MultiTaskModelSpec, handover: Handover,
                   ready: bool) -> list[Action]:
    """Apply the old-backend Service of every task whose old pods may get requests; remove the
    others once the gateway no longer routes to them."""
    if not active(spec) and not any(
            (row.get("rollout") or {}) for row in obs.status.get("tasks") or []):
        return []  # no rollout now or before: nothing to look up
    actions: list[Action] = []
    for task in spec.tasks:
        name = naming.legacy_name(obs.name, task.name)
        decision = handover.decisions.get(task.name)
        service = obs.services.get(task.service.name) if task.service else None
        if decision is not None and decision.needs_old_backend and service is not None:
            selector, ports = _original(service, obs.name)
            if selector:
                actions.append(Apply(legacy.render_legacy_service(
                    obs.owner, task.name, selector, ports)))
                continue
        if ready or obs.gateway is None:
            actions.append(Absent("v1", "Service", name, obs.uid))
    return actions
