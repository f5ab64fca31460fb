"""Serving cost before and after the cutover, in GPUs. Pure.

Before: every task runs its own service; a task costs the GPUs requested by the pods behind its
old Service when the operator can read them, else `baseline.gpus`. After: the unified inference
deployment (replicas x GPUs per replica; minReplicas when autoscaling), plus the services that
stay because their task was filtered out or did not qualify. With no qualified task nothing is
rolled out, so nothing changes. The paper's headline, 90.9% for 11 one-GPU tasks on one model,
is 1 - 1/11.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from .api.spec import MultiTaskModelSpec


@dataclass(frozen=True)
class ServingCost:
    gpus_before: int
    gpus_after: int

    @property
    def reduction(self) -> float:
        """1 - after / before: the share of serving GPUs saved (0 when nothing was served)."""
        if self.gpus_before <= 0:
            return 0.0
        return 1 - self.gpus_after / self.gpus_before

    @property
    def saving(self) -> str:
        return f"{100 * self.reduction:.1f}%"


def unified_gpus(spec: MultiTaskModelSpec) -> int:
    serving = spec.serving
    replicas = serving.autoscaling.min_replicas if serving.autoscaling else serving.replicas
    return replicas * serving.resources.gpus


def serving_cost(
    spec: MultiTaskModelSpec,
    qualified: Collection[str],
    observed_gpus: Mapping[str, int] | None = None,
) -> ServingCost:
    """GPUs before and after moving the `qualified` tasks onto the unified deployment."""
    observed_gpus = observed_gpus or {}
    per_task = {t.name: observed_gpus.get(t.name, t.baseline.gpus) for t in spec.tasks}
    before = sum(per_task.values())
    moved = [name for name in per_task if name in set(qualified)]
    if not moved:
        return ServingCost(before, before)
    staying = sum(gpus for name, gpus in per_task.items() if name not in moved)
    return ServingCost(before, unified_gpus(spec) + staying)
