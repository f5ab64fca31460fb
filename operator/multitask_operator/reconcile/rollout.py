"""Handing one task's traffic over, step by step (spec.serving.rollout): the pure decisions.

    Pending --cutover--> Shadow --holds--> Canary 10 --holds--> Canary 50 --holds--> Promoted
                            \\__________________\\___________________\\--breaks--> RolledBack

A task is Pending until its Service is taken over; then it walks the rollout's phases (the
shadow phase first, if any, then the canary steps). A phase holds when, over at least
`intervalSeconds`, at least `minRequests` requests were compared, the share that agreed is at
least `agreementFloor` and the unified model's error rate at most `errorCeiling`; it breaks as
soon as a sample of `minRequests` crosses either threshold. Breaking rolls the task back: the
gateway sends all its requests to the old backend and the task's Service is restored. Reaching
the last step (100) promotes it: the gateway drops the task's old backend.

The counters come from the gateway pods (observed.GatewayReport), per task and step id, so a
phase starts from zero; a task's state lives in status.tasks[].rollout (the previous status is
an input), so an operator restarted at any point continues where it was. RolledBack is final for
a revision; a new revision starts again from Pending (a Promoted task stays Promoted: its
Service already serves from the gateway, and a new revision reaches it by the inference
Deployment's rolling update).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..api.gateway_config import RolloutRoute
from ..api.serving import Rollout
from ..api.status import TaskRollout
from .actions import Event
from .observed import GatewayReport, StepCounts, elapsed

PENDING, SHADOW, CANARY, PROMOTED, ROLLED_BACK = (
    "Pending", "Shadow", "Canary", "Promoted", "RolledBack")
POLL_SECONDS = 15.0  # how often a phase in progress is looked at, at most


def poll(rollout: Rollout) -> float:
    """How soon to look at a rollout again: 15 s, or a quarter of a shorter interval."""
    return max(1.0, min(POLL_SECONDS, rollout.interval_seconds / 4))


@dataclass
class TaskDecision:
    status: TaskRollout
    route: RolloutRoute | None  # what the gateway config carries for the task
    events: list[Event] = field(default_factory=list)
    requeue: float | None = None

    @property
    def rolled_back(self) -> bool:
        return self.status.state == ROLLED_BACK

    @property
    def needs_old_backend(self) -> bool:
        """Whether the gateway may still send requests to the old backend."""
        return self.status.state != PROMOTED


def seconds_since(since: str | None, now: str) -> float:
    return elapsed(since, now) if since else 0.0


def step_id(revision: str, weight: int | None) -> str:
    """The metrics label of a phase: `<revision>-shadow` or `<revision>-<weight>`."""
    return f"{revision}-{'shadow' if weight is None else weight}"


def _state(weight: int | None) -> str:
    return SHADOW if weight is None else CANARY


def _describe(state: str, weight: int) -> str:
    return "shadow" if state == SHADOW else f"canary {weight}%"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def verdict(counts: StepCounts, rollout: Rollout, held: float) -> tuple[str, str]:
    """("promote" | "rollback" | "wait", why) for a phase with `counts`, held `held` s."""
    agreement, errors = counts.agreement, counts.error_rate
    sample = rollout.min_requests
    if counts.compared >= sample and agreement is not None and agreement < rollout.agreement_floor:
        return "rollback", (f"agreement {_percent(agreement)} over {counts.compared} compared "
                            f"requests is below agreementFloor {_percent(rollout.agreement_floor)}")
    if counts.unified >= sample and errors is not None and errors > rollout.error_ceiling:
        return "rollback", (f"the unified model failed {counts.unified_errors} of "
                            f"{counts.unified} requests ({_percent(errors)}), above "
                            f"errorCeiling {_percent(rollout.error_ceiling)}")
    if counts.compared < sample:
        return "wait", f"{counts.compared} of {sample} compared requests so far"
    if held < rollout.interval_seconds:
        return "wait", (f"held {held:.0f} of {rollout.interval_seconds} s "
                        f"(agreement {_percent(agreement)} over {counts.compared} requests)")
    return "promote", (f"agreement {_percent(agreement)} over {counts.compared} requests, "
                       f"errors {_percent(errors or 0.0)}, held {held:.0f} s")


def previous(row: dict[str, Any] | None) -> TaskRollout | None:
    raw = (row or {}).get("rollout")
    try:
        return TaskRollout.model_validate(raw) if raw else None
    except ValueError:
        return None  # a status written by hand or by an older operator: start again


def decide(task: str, rollout: Rollout, revision: str, prev: TaskRollout | None, taken: bool,
           report: GatewayReport | None, legacy_url: str, now: str) -> TaskDecision:
    """The next rollout state of `task` (whose Service is on the gateway when `taken`)."""
    phases = rollout.phases()
    strategy = str(rollout.strategy)
    fresh = TaskRollout(strategy=strategy, state=PENDING, revision=revision, phase=0,
                        weight=phases[0] or 0, since=now, reason="waiting for the cutover")
    state = prev
    if state is None or state.strategy != strategy or (
            state.revision != revision and state.state != PROMOTED) or (
            state.state == PROMOTED and not taken):
        state = fresh
    if state.state == PROMOTED:
        return TaskDecision(state, None)
    if state.state == ROLLED_BACK:
        return TaskDecision(state, _route(rollout, legacy_url, revision, None, 0))
    index = min(state.phase or 0, len(phases) - 1)
    weight = phases[index]
    if state.state == PENDING or not taken:
        if not taken:
            if state.state != PENDING:
                state = fresh
            return TaskDecision(state, _route(rollout, legacy_url, revision, weight,
                                              weight or 0), requeue=poll(rollout))
        state = state.model_copy(update={"state": _state(weight), "since": now,
                                         "reason": "started at cutover"})
    route = _route(rollout, legacy_url, revision, weight, state.weight)
    if report is None or report.problem:
        why = report.problem if report else "not read yet"
        return TaskDecision(state.model_copy(update={
            "reason": f"waiting for the gateway's metrics: {why}"}), route,
            requeue=poll(rollout))
    counts = report.step(task, step_id(revision, weight))
    held = seconds_since(state.since, now)
    measured = {"requests": counts.compared, "agreement": counts.agreement,
                "errors": counts.error_rate}
    outcome, why = verdict(counts, rollout, held)
    here = _describe(state.state, state.weight)
    if outcome == "rollback":
        status = state.model_copy(update={**measured, "state": ROLLED_BACK, "weight": 0,
                                          "since": now, "reason": why})
        return TaskDecision(status, _route(rollout, legacy_url, revision, None, 0), [Event(
            "Warning", "RolledBack", f"task {task}: rolled back from {here}: {why}; its "
            "Service goes back to its own pods")])
    if outcome == "wait":
        wait = max(1.0, min(poll(rollout), rollout.interval_seconds - held))
        return TaskDecision(state.model_copy(update={**measured, "reason": why}), route,
                            requeue=wait)
    nxt = index + 1
    if nxt >= len(phases) or phases[nxt] == 100:
        status = TaskRollout(strategy=strategy, state=PROMOTED, revision=revision, phase=nxt,
                             weight=100, since=now, reason=f"promoted from {here}: {why}",
                             **measured)
        return TaskDecision(status, None, [Event(
            "Normal", "RolloutPromoted", f"task {task}: promoted from {here} to 100%: {why}")])
    weight = phases[nxt]
    assert weight is not None
    status = TaskRollout(strategy=strategy, state=CANARY, revision=revision, phase=nxt,
                         weight=weight, since=now, reason=f"from {here}: {why}")
    return TaskDecision(status, _route(rollout, legacy_url, revision, weight, weight), [Event(
        "Normal", "RolloutStep", f"task {task}: {here} -> canary {weight}%: {why}")],
        requeue=poll(rollout))


def _route(rollout: Rollout, legacy_url: str, revision: str, phase_weight: int | None,
           weight: int) -> RolloutRoute:
    return RolloutRoute(legacy=legacy_url, weight=weight, sample_rate=rollout.sample_rate,
                        similarity=rollout.similarity_threshold,
                        step=step_id(revision, phase_weight))


def summary(task: str, status: TaskRollout) -> str:
    """One phrase for the model's status message (no counts: a message that changes on every
    reconcile would post an Event each time)."""
    if status.state in (SHADOW, CANARY):
        return f"{task} {_describe(status.state, status.weight)}"
    return f"{task} {status.state.lower()}"
