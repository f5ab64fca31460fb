"""`RoutedTask`: one task as the serving renderers and the gateway see it.

The operator builds the list after evaluation: only tasks that the unified model serves, with
the labels it trained on (declared in the spec or inferred from the data) and, when
`recipe.keep` is all-as-adapters, the adapter group the task was trained in.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.common import Keep, TaskType
from ..api.gateway_config import RolloutRoute, TaskRoute
from ..api.spec import MultiTaskModelSpec, Task


@dataclass(frozen=True)
class RoutedTask:
    name: str
    type: str  # classification | generation
    instruction: str
    labels: tuple[str, ...] | None = None
    adapter: str | None = None  # LoRA adapter group; None serves the merged model
    service: str | None = None  # the task's old per-task Service, matched on the Host header
    rollout: RolloutRoute | None = None  # its handover in progress (reconcile/handover.py)

    def __post_init__(self) -> None:
        if self.type not in (TaskType.CLASSIFICATION, TaskType.GENERATION):
            raise ValueError(
                f"task {self.name}: type '{self.type}' is not classification or generation"
            )
        if self.type == TaskType.CLASSIFICATION and not self.labels:
            raise ValueError(
                f"task {self.name} is a classification task without labels; pass the labels "
                "declared in the spec or inferred from its training data"
            )

    @classmethod
    def from_task(
        cls, task: Task, labels: list[str] | None = None, adapter: str | None = None
    ) -> RoutedTask:
        """From a spec task; `labels` fills in labels inferred from data when the spec has none."""
        chosen = task.labels or labels
        return cls(
            name=task.name,
            type=str(task.type),
            instruction=task.instruction,
            labels=tuple(chosen) if chosen else None,
            adapter=adapter,
            service=task.service.name if task.service else None,
        )

    def route(self) -> TaskRoute:
        """The task's entry in the gateway config."""
        return TaskRoute(name=self.name, type=self.type, instruction=self.instruction,
                         labels=self.labels or (), adapter=self.adapter, service=self.service,
                         rollout=self.rollout)


def adapter_groups(spec: MultiTaskModelSpec, tasks: list[RoutedTask]) -> list[str]:
    """LoRA adapter groups the inference server loads; empty for a merged model."""
    if spec.recipe.keep != Keep.ALL_AS_ADAPTERS:
        return []
    missing = [t.name for t in tasks if not t.adapter]
    if len(missing) == len(tasks):
        # Filtering left a single group: its one adapter was merged into the base model at
        # export (the same answers, no adapter switching), so the model is served merged.
        return []
    if missing:
        raise ValueError(
            f"recipe.keep is all-as-adapters but tasks {missing} have no adapter group; "
            "every routed task needs the group it was trained in"
        )
    return sorted({t.adapter for t in tasks if t.adapter})
