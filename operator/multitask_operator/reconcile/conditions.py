"""Status conditions (metav1.Condition shape) and the phase they summarise.

Four conditions, each with a reason and a message for people:
    Trained    the training steps of the current revision finished
    Evaluated  per-task scores and qualification are known
    Deployed   the unified model and the gateway are available
    Ready      the model serves its qualified tasks (cut over, or waiting for approval)
`lastTransitionTime` changes only when `status` changes, as Kubernetes conventions ask.
"""

from __future__ import annotations

from typing import Any

TYPES = ("Ready", "Trained", "Evaluated", "Deployed")


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: bool | None,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> list[dict[str, Any]]:
    value = "Unknown" if status is None else ("True" if status else "False")
    old = next((c for c in conditions if c.get("type") == kind), None)
    changed = old is None or old.get("status") != value
    new = {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now if changed or old is None else old.get("lastTransitionTime",
                                                                            now),
        "observedGeneration": generation,
    }
    return [c for c in conditions if c.get("type") != kind] + [new]


def ordered(conditions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conditions in the documented order, so that a status diff shows real changes only."""
    rank = {kind: i for i, kind in enumerate(TYPES)}
    return sorted(conditions, key=lambda c: rank.get(c.get("type", ""), len(TYPES)))
