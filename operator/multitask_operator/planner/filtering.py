"""Task filtering: group tasks that do not hurt each other and choose the group(s) to keep.

The paper finds that heterogeneous tasks hurt each other when trained together: generation vs
classification, and more finely binary vs ordinal vs multi-class classification. `byType` groups
by type, `byTaxonomy` by kind of classification (generation is one group), `none` puts every task
in one group. `keep` then picks the unified model's group; the other tasks keep their services.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..api.common import Keep, TaskFiltering, TaskType
from ..api.spec import MultiTaskModelSpec, Task


@dataclass(frozen=True)
class Grouping:
    group_of: dict[str, str]  # task -> group
    taxonomy_of: dict[str, str | None]  # task -> declared or inferred taxonomy
    kept: list[str]  # groups that the unified model serves, in a stable order
    reasons: dict[str, str]  # task -> why it is in or out


def taxonomy(task: Task, inferred_labels: Sequence[str] | None) -> str | None:
    """Declared taxonomy, else binary for two labels and multiclass for more."""
    if task.type != TaskType.CLASSIFICATION:
        return None
    if task.taxonomy is not None:
        return str(task.taxonomy)
    labels = task.labels if task.labels is not None else inferred_labels
    if labels is None:
        return "multiclass"
    return "binary" if len(set(labels)) == 2 else "multiclass"


def _group(task: Task, tax: str | None, mode: str) -> str:
    if mode == TaskFiltering.NONE:
        return "all"
    if mode == TaskFiltering.BY_TYPE or task.type == TaskType.GENERATION:
        return str(task.type)
    return tax or "multiclass"


def _group_type(members: list[Task]) -> str | None:
    types = {str(t.type) for t in members}
    return types.pop() if len(types) == 1 else None


def group_tasks(
    spec: MultiTaskModelSpec,
    counts: Mapping[str, int],
    labels: Mapping[str, Sequence[str]] | None = None,
) -> Grouping:
    labels = labels or {}
    mode = spec.recipe.task_filtering
    taxonomy_of = {t.name: taxonomy(t, labels.get(t.name)) for t in spec.tasks}
    group_of = {t.name: _group(t, taxonomy_of[t.name], mode) for t in spec.tasks}
    members: dict[str, list[Task]] = {}
    for task in spec.tasks:
        members.setdefault(group_of[task.name], []).append(task)

    def size(group: str) -> tuple[int, int, str]:
        # Most tasks first, then most examples; the name makes ties deterministic.
        tasks = members[group]
        return (-len(tasks), -sum(counts.get(t.name, 0) for t in tasks), group)

    keep = spec.recipe.keep
    if keep == Keep.ALL_AS_ADAPTERS:
        kept = sorted(members, key=size)
        rule = "all-as-adapters keeps every group, each as its own adapter"
    else:
        candidates = [
            g for g in members if keep == Keep.LARGEST or _group_type(members[g]) == keep
        ]
        kept = sorted(candidates, key=size)[:1]
        rule = (
            "the largest group (most tasks, then most examples)"
            if keep == Keep.LARGEST
            else f"the largest {keep} group"
        )

    how = {
        TaskFiltering.BY_TYPE: "task type",
        TaskFiltering.BY_TAXONOMY: "task type and classification taxonomy",
        TaskFiltering.NONE: "none (every task in one group)",
    }[mode]
    reasons = {}
    for task in spec.tasks:
        group = group_of[task.name]
        if group in kept:
            reasons[task.name] = f"in group '{group}', kept: {rule}"
        else:
            reasons[task.name] = (
                f"filtered out: group '{group}' is not kept (grouping by {how}; kept "
                f"{' and '.join(repr(k) for k in kept)} as {rule}); keeps its own service"
            )
    return Grouping(group_of=group_of, taxonomy_of=taxonomy_of, kept=kept, reasons=reasons)
