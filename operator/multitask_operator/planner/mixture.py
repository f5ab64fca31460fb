"""Task mixtures: the probability with which each training example is drawn from each task.

    stage 1, instance-balanced:      p_i = n_i / sum_j n_j
    stage 2, temperature-scaled:     p_i = min(n_i, K)^(1/tau) / sum_j min(n_j, K)^(1/tau)

tau = 1 with K = inf is examples-proportional, tau -> inf is uniform over tasks; the size limit
K keeps one huge task from crowding out the rest (Raffel et al. 2020, used by arXiv 2411.03644).
Computed in log space: min(n, K)^(1/tau) overflows a float for small tau (1e6^(1/0.01)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


class MixtureError(ValueError):
    pass


def _check(counts: Mapping[str, int]) -> None:
    if not counts:
        raise MixtureError("a mixture needs at least one task")
    empty = sorted(name for name, n in counts.items() if n <= 0)
    if empty:
        raise MixtureError(f"tasks with no training examples cannot be mixed: {', '.join(empty)}")


def _normalise_logs(logs: Mapping[str, float]) -> dict[str, float]:
    top = max(logs.values())
    exps = {name: math.exp(value - top) for name, value in logs.items()}
    total = math.fsum(exps.values())
    return {name: value / total for name, value in exps.items()}


def instance_balanced(counts: Mapping[str, int]) -> dict[str, float]:
    """p_i = n_i / sum_j n_j: every example equally likely, whatever its task."""
    _check(counts)
    total = math.fsum(counts.values())
    return {name: n / total for name, n in counts.items()}


def temperature_scaled(
    counts: Mapping[str, int], temperature: float, limit: float | None = None
) -> dict[str, float]:
    """p_i = min(n_i, K)^(1/tau) / sum_j min(n_j, K)^(1/tau); `limit` None means K = inf."""
    _check(counts)
    if not temperature > 0:
        raise MixtureError(f"temperature must be > 0, got {temperature}")
    if limit is not None and not limit >= 1:
        raise MixtureError(f"the dataset-size limit must be >= 1, got {limit}")
    cap = math.inf if limit is None else limit
    return _normalise_logs(
        {name: math.log(min(n, cap)) / temperature for name, n in counts.items()}
    )


def capped_size(counts: Mapping[str, int], limit: float | None) -> int:
    """sum_j min(n_j, K): the examples in one stage-2 'epoch'."""
    cap = math.inf if limit is None else limit
    return int(sum(min(n, cap) for n in counts.values()))
