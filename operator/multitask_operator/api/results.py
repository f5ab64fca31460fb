"""What the trainer reports, as the operator and `mtm run` read it. Pure: no torch.

Three shapes, all camelCase on the wire like the rest of the API:

* `ProgressEvent`: one JSON line per logged training step, on the trainer's stdout and in
  `stages/<stage>/progress.jsonl`. `parse_progress_line` turns a log line back into one and
  ignores anything else a library may print.
* `StepSummary`: the short result of one trainer step, written to `/dev/termination-log`
  (Kubernetes keeps at most 4096 bytes of it; `termination_message` trims to fit).
* `EvalResults`: `eval/results.json`, per task the score, its baseline and whether it qualified.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import Field, ValidationError

from .common import StatusModel

# Kubernetes truncates a container's termination message to 4096 bytes.
TERMINATION_MESSAGE_LIMIT = 4096


class ProgressEvent(StatusModel):
    event: str = Field("progress", description="Always 'progress': tells these lines apart.")
    stage: str
    step: int = Field(ge=0)
    total_steps: int = Field(ge=0)
    loss: float | None = None
    learning_rate: float | None = None
    tokens: int | None = Field(None, description="Non-padding tokens trained so far in the stage.")
    tokens_per_second: float | None = Field(None, description="Non-padding tokens per second.")
    non_padding_fraction: float | None = Field(None, ge=0, le=1)
    percent: float = Field(ge=0, le=100)
    eta_seconds: float | None = Field(None, ge=0)
    checkpoint: str | None = Field(None, description="Checkpoint written at this step, if any.")

    def to_line(self) -> str:
        return json.dumps(self.to_wire(), separators=(",", ":"))


def parse_progress_line(line: str) -> ProgressEvent | None:
    """The progress event on `line`, or None for any other output (warnings, plain logs)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("event") != "progress":
        return None
    try:
        return ProgressEvent.model_validate(data)
    except ValidationError:
        return None


class StepSummary(StatusModel):
    """The termination message of a trainer step: did it work, and the few numbers that matter."""

    step: str = Field(description="prepare, train, evaluate or export.")
    stage: str | None = Field(None, description="The stage trained, for train.")
    ok: bool
    message: str = Field(description="One sentence for people: what was done or what failed.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Small step-specific numbers, e.g. per-task scores."
    )


    def result(self, kind: type[R]) -> R:
        """`details` as the typed result of its step (fields a newer trainer adds are ignored,
        missing ones take their defaults)."""
        return kind.model_validate(self.details)


class StepResult(StatusModel):
    """Base of the typed `details` of each step: the trainer builds one, the operator and the
    local runner read it back with StepSummary.result()."""

    def to_details(self) -> dict[str, Any]:
        """For StepSummary.details and the step's COMPLETE marker: camelCase, None kept."""
        return self.model_dump(by_alias=True, mode="json")


R = TypeVar("R", bound=StepResult)


class PrepareResult(StepResult):
    skipped: bool = Field(False, description="The workspace was already prepared for this spec.")
    spec_digest: str | None = None
    counts: dict[str, int] = Field(default_factory=dict,
                                   description="Training examples per task after the eval split.")
    labels: dict[str, list[str]] = Field(
        default_factory=dict, description="Labels per classification task (declared or inferred).")
    stages: list[str] = Field(default_factory=list, description="The stages planned, in order.")
    fingerprints: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="What identifies each task's data as prepare read it: "
        "{task: {train: sha256:..|etag:..|modified:..|hf:<commit>, eval?: ..}}.")
    removed_revisions: list[str] = Field(
        default_factory=list, description="Older revisions' workspace folders it deleted "
        "(--keep-revisions).")


class TrainResult(StepResult):
    skipped: bool = False
    stage: str | None = None
    steps: int | None = None
    resumed_from: int | None = Field(None, description="The checkpoint step it resumed from.")
    last_loss: float | None = None
    non_padding_fraction: float | None = None
    packed: bool | None = None
    truncated_inputs: int | None = None
    truncated_targets: int | None = None


class EvaluateResult(StepResult):
    scores: dict[str, float | None] = Field(default_factory=dict)
    qualified: list[str] = Field(default_factory=list)
    baselines: dict[str, float | None] = Field(
        default_factory=dict, description="Trained single-task baselines, by task.")
    intervals: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="By task: scoreInterval, baselineInterval (95% "
        "bootstrap) and majority (classification), as in TaskResult.")


class ExportResult(StepResult):
    skipped: bool = False
    layout: str | None = Field(None, description="merged, or adapters (base/ + adapters/).")
    groups: list[str] = Field(default_factory=list)
    prompt_format: dict[str, str] | None = Field(
        None, description="The template training used: prefix, suffix, source.")
    tasks: int | None = Field(None, description="Tasks in the export's tasks.json.")


def termination_message(summary: StepSummary) -> str:
    """`summary` as JSON of at most 4096 bytes: details go first, then the message is cut."""
    text = json.dumps(summary.to_wire(), separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) <= TERMINATION_MESSAGE_LIMIT:
        return text
    trimmed = summary.model_copy(update={"details": {"truncated": True}})
    text = json.dumps(trimmed.to_wire(), separators=(",", ":"), ensure_ascii=False)
    excess = len(text.encode()) - TERMINATION_MESSAGE_LIMIT
    if excess > 0:
        # Cut the message by bytes, leaving room for the ellipsis; errors="ignore" drops a
        # multi-byte character split in half rather than writing invalid UTF-8.
        raw = summary.message.encode()[: max(0, len(summary.message.encode()) - excess - 8)]
        trimmed = trimmed.model_copy(update={"message": raw.decode(errors="ignore") + "..."})
        text = json.dumps(trimmed.to_wire(), separators=(",", ":"), ensure_ascii=False)
    return text


class TaskResult(StatusModel):
    name: str
    type: str
    included: bool = Field(description="Whether the unified model serves the task.")
    metric: str
    score: float | None = Field(None, description="The unified model's score, in [0, 1].")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Every metric computed for the task, in [0, 1]."
    )
    baseline: float | None = None
    baseline_source: str = Field(
        description="spec (baseline.score), trained (a single-task baseline run) or none."
    )
    ratio: float | None = Field(None, description="score / baseline.")
    score_interval: list[float] | None = Field(
        None, description="95% bootstrap interval of the score over the eval examples.")
    baseline_interval: list[float] | None = Field(
        None, description="The same for a trained baseline, on the same resamples.")
    majority: float | None = Field(
        None, description="Classification: the score of always answering the most frequent "
        "training label.")
    margin: float | None = Field(
        None, description="qualifyRule nonInferiority: the lower 95% bound of score - "
        "qualifyThreshold x baseline; the task qualifies when it is >= 0.")
    qualified: bool
    examples: int = Field(ge=0, description="Evaluation examples scored.")
    stage: str | None = Field(None, description="The stage whose model was evaluated.")
    reason: str | None = Field(None, description="Why the task is out or did not qualify.")


class EvalResults(StatusModel):
    qualify_threshold: float
    tasks: list[TaskResult]

    def task(self, name: str) -> TaskResult:
        return next(t for t in self.tasks if t.name == name)

    @property
    def qualified(self) -> list[str]:
        return [t.name for t in self.tasks if t.qualified]
