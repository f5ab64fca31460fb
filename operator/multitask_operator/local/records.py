"""The records the local runner's steps hand each other: one run of an ablation variant, and the
facts a finished run's report is made of. Their own module so that the modules that write them
(ablate.py, report.py) and those that read them (ablation_report.py, plots.py) never import
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..api.results import EvalResults, ProgressEvent
from ..api.spec import MultiTaskModelSpec
from ..api.status import Plan
from ..cost import ServingCost


@dataclass
class RunRecord:
    """One finished run of one variant and seed, as the report reads it."""

    seed: int
    variant: str
    task: str | None
    root: Path
    temperature: float | None = None
    limit: int | None = None


@dataclass
class RunFacts:
    name: str
    spec: MultiTaskModelSpec
    plan: Plan
    results: EvalResults
    curves: dict[str, list[ProgressEvent]]  # stage -> progress events
    cost: ServingCost
