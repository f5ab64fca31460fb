"""Prometheus metrics of the operator process, served by `mtm operator` on :9090/metrics.

    mtm_operator_reconciles_total{result}       reconciles done (ok, error)
    mtm_operator_reconcile_seconds               time of one reconcile (observe + decide + act)
    mtm_operator_models{phase}                   MultiTaskModels by phase, as last reconciled
    mtm_operator_job_duration_seconds{step}      trainer Job run time (prepare, stage, ...)
    mtm_operator_errors_total{kind}              API errors and unexpected exceptions by kind
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("mtm_operator_reconciles_total", "Reconciles done.", ["result"])
RECONCILE_SECONDS = Histogram("mtm_operator_reconcile_seconds", "Time of one reconcile.")
MODELS = Gauge("mtm_operator_models", "MultiTaskModels by phase.", ["phase"])
JOB_SECONDS = Histogram(
    "mtm_operator_job_duration_seconds", "Trainer Job run time.", ["step"],
    # Steps run from seconds (a tiny model) to days (stage 2 of a large one).
    buckets=(10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
ERRORS = Counter("mtm_operator_errors_total", "Errors while reconciling.", ["kind"])


def step_kind(step: str) -> str:
    """stage2-classification -> stage2, baseline-intent -> baseline: bounded label values."""
    return step.split("-", 1)[0]


def job_finished(step: str, started: str | None, finished: str | None) -> None:
    if not started or not finished:
        return
    try:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started))
    except ValueError:
        return
    JOB_SECONDS.labels(step_kind(step)).observe(max(0.0, seconds.total_seconds()))


def set_phases(phases: dict[str, str]) -> None:
    """`phases`: model uid -> phase, for every model this process reconciles."""
    counts: dict[str, int] = {}
    for phase in phases.values():
        counts[phase] = counts.get(phase, 0) + 1
    for phase in ("Pending", "Preparing", "TrainingStage1", "TrainingStage2", "Evaluating",
                  "Exporting", "Deploying", "Ready", "Failed"):
        MODELS.labels(phase).set(counts.get(phase, 0))
