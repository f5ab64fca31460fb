"""What a reconcile decides: object changes, a status patch, Events and when to look again.

The reconcile core returns an `Outcome`; `k8s/apply.py` (`carry_out`, called by the per-model
loop in `k8s/runner.py`, which kopf's handlers start) carries it out in order. Pure data: no
kopf, no client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float (a NaN loss from the trainer) turned into None: JSON
    has no NaN, and an API server refuses a patch that holds one, on every reconcile."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Create:
    """Create `obj` unless it exists (409 is success: the object was created before a restart)."""

    obj: dict[str, Any]


@dataclass(frozen=True)
class Apply:
    """Create `obj`, or merge-patch the existing one to match it (Deployments, Services...)."""

    obj: dict[str, Any]


@dataclass(frozen=True)
class Patch:
    """Merge-patch an existing object; `None` values delete keys (RFC 7386)."""

    api_version: str
    kind: str
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class Delete:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Absent:
    """Delete the object if it exists and this MultiTaskModel (uid `owner_uid`) owns it: what a
    spec no longer wants (an HPA after autoscaling is turned off). The counterpart of Apply."""

    api_version: str
    kind: str
    name: str
    owner_uid: str


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = Create | Apply | Patch | Delete | Absent

# How often a running step is looked at: progress must reach the status at least every 30 s.
PROGRESS_INTERVAL_S = 20.0
# How often a rollout is looked at while Deployments become available.
ROLLOUT_INTERVAL_S = 10.0


@dataclass
class Outcome:
    actions: list[Action] = field(default_factory=list)
    status: dict[str, Any] | None = None  # the whole new status, camelCase
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None  # None: wait for a change (a Job, a Deployment, the spec)
    remove_annotations: list[str] = field(default_factory=list)
    done: bool = False  # finalize: every taken-over Service is restored

    def requeue(self, seconds: float) -> None:
        self.requeue_after = seconds if self.requeue_after is None else min(
            self.requeue_after, seconds)
