"""Changed data retrains: the fingerprints of each task's data, and the check that finds a change.

    status.data.fingerprints   what the current revision's prepare step read (its result)
    check Job                  `python -m multitask_trainer fingerprint`: what the data is now;
                               run on `multitask.ai/check-data` (any value) and every
                               spec.training.dataCheckIntervalSeconds once prepared
    status.data.token          set to a hash of the new fingerprints when the check finds a
                               change: it joins the revision (revision.current_revision), so the
                               new data trains a new revision while the current one serves

The check Job mounts no workspace (only the spec, the pvc:// data claims and the data Secret),
so it never waits for, or conflicts with, a training pod. Pure: from the observed Jobs and the
last status.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from ..api.results import PrepareResult, StepSummary
from ..api.spec import MultiTaskModelSpec
from ..datafiles import fingerprint_changes as changed
from .actions import Action, Delete, Event
from .observed import FAILED, SUCCEEDED, Observed, elapsed

CHECK_ANNOTATION = "multitask.ai/check-data"
STEP = "fingerprint"


@dataclass
class DataDecision:
    data: dict[str, Any]  # the new status.data
    actions: list[Action] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    check: str | None = None  # a check Job to create, by name
    remove_annotation: bool = False
    requeue: float | None = None


def token_of(fingerprints: dict[str, dict[str, str]]) -> str:
    text = json.dumps(fingerprints, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def check_name(model: str, trigger: str) -> str:
    return f"{model}-datacheck-{hashlib.sha256(trigger.encode()).hexdigest()[:8]}"


def decide(obs: Observed, spec: MultiTaskModelSpec, prepared: StepSummary | None
           ) -> DataDecision:
    """`prepared`: the current revision's finished prepare step, if any."""
    data: dict[str, Any] = dict(obs.status.get("data") or {})
    out = DataDecision(data)
    if prepared is not None:
        read = prepared.result(PrepareResult).fingerprints
        if read:
            data["fingerprints"] = read  # what the revision being served was trained on
            data.setdefault("checkedAt", obs.now)  # the next interval counts from here
    known = data.get("fingerprints") or {}
    checks = [j for j in obs.jobs if j.step == STEP]
    for job in sorted(checks, key=lambda j: j.name):
        if job.phase not in (SUCCEEDED, FAILED):
            out.requeue = 10.0
            continue  # still running: its result is consumed when it ends
        out.actions.append(Delete(job.api_version, job.kind, job.name))
        out.remove_annotation = CHECK_ANNOTATION in obs.annotations
        data["checkedAt"] = obs.now
        if job.phase == FAILED or job.summary is None or not job.summary.ok:
            why = job.message or "no message"
            data["message"] = f"the data check failed: {why}"
            out.events.append(Event("Warning", "DataCheckFailed", data["message"]))
            continue
        now = (job.summary.details or {}).get("fingerprints") or {}
        moved = changed(known, now) if known else []
        if moved:
            data["token"] = token_of(now)
            data["fingerprints"] = now
            data["message"] = f"changed: {', '.join(moved)}"
            out.events.append(Event("Normal", "DataChanged", (
                f"the data of {', '.join(moved)} changed: a new revision trains on it while "
                "the current one keeps serving")))
        else:
            data["message"] = "unchanged"
            if not known:
                data["fingerprints"] = now
    if checks or not known:
        return out  # one check at a time, and only against what a revision was trained on
    trigger = None
    if CHECK_ANNOTATION in obs.annotations and not out.remove_annotation:
        trigger = f"annotation:{obs.annotations[CHECK_ANNOTATION]}:{data.get('checkedAt')}"
    interval = spec.training.data_check_interval_seconds
    if trigger is None and interval:
        last = data.get("checkedAt")
        waited = elapsed(last, obs.now) if last else float("inf")
        if waited >= interval:
            trigger = f"interval:{last}"
        else:
            out.requeue = interval - waited
    if trigger is not None:
        out.check = check_name(obs.name, trigger)
    return out
