"""`MultiTaskModel.status`: what the operator (or `mtm run`) observed; never written by users.

The plan models are shared with the planner: `status.plan` is exactly the planner's output.
"""

from __future__ import annotations

from pydantic import Field

from .common import Phase, StatusModel


class Condition(StatusModel):
    """The standard metav1.Condition shape."""

    type: str = Field(description="Ready, Trained, Evaluated or Deployed.")
    status: str = Field(pattern=r"^(True|False|Unknown)$", description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason, e.g. Training, JobFailed.")
    message: str = Field("", description="What happened, for people.")
    last_transition_time: str | None = Field(None, description="RFC 3339 time.")
    observed_generation: int | None = Field(
        None, description="The metadata.generation the condition was set for.")


class Progress(StatusModel):
    """The step running now and how far it is, from the trainer's progress lines."""

    stage: str | None = Field(None, description="The step running now, e.g. stage2.")
    percent: float | None = Field(None, ge=0, le=100, description="Of the step, 0 to 100.")
    eta_seconds: float | None = Field(None, ge=0, description="Estimated seconds left.")
    step: int | None = Field(None, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    loss: float | None = Field(None, description="Training loss at the last logged step.")
    overall_percent: float | None = Field(
        None, ge=0, le=100, description="Of the whole pipeline, 0 to 100: the steps weighted by "
        "their planned optimizer steps (evaluate and export count 5 % of training each).")
    overall_eta_seconds: float | None = Field(
        None, ge=0, description="Estimated seconds of training left, over every stage not yet "
        "trained, at the current stage's speed.")


class TaskPlan(StatusModel):
    """One task as the planner sees it."""

    name: str = Field(description="The task's name.")
    type: str = Field(description="classification or generation.")
    taxonomy: str | None = Field(
        None, description="Binary, ordinal or multiclass (declared or inferred)."
    )
    group: str = Field(description="The filtering group the task falls in.")
    included: bool = Field(description="Whether the unified model serves the task.")
    reason: str = Field(description="Why the task is in or out.")
    high_resource: bool = Field(False, description="Whether stage 1 trains it.")
    examples: int = Field(ge=0, description="Training examples (after the eval split).")


class StagePlan(StatusModel):
    """One training stage: its tasks, their mixture and its length."""

    name: str = Field(
        description="stage1, stage2 (suffixed -GROUP with all-as-adapters) or baseline-TASK."
    )
    kind: str = Field(description="stage1, stage2 or baseline.")
    group: str | None = Field(None, description="The adapter group a stage trains.")
    tasks: list[str] = Field(description="The tasks the stage trains.")
    weights: dict[str, float] = Field(description="Sampling probability per task; sums to 1.")
    epochs: float = Field(description="Passes over the stage's mixture.")
    epoch_examples: int = Field(description="Examples in one epoch of this stage's mixture.")
    steps: int = Field(
        description="Optimizer steps: ceil(epochs x epochExamples / batchSize), capped by maxSteps."
    )
    expected_passes: dict[str, float] = Field(
        description="Expected passes over each task's data: steps x batchSize x weight / examples."
    )
    init_from: str | None = Field(None, description="The stage whose weights this one starts from.")


class SkippedStage(StatusModel):
    """A stage the recipe would have had and the plan leaves out."""

    name: str = Field(description="The stage, e.g. stage1.")
    reason: str = Field(description="Why it is skipped.")


class Plan(StatusModel):
    """The recipe's plan for the current revision, as prepare computed it from the data."""

    groups: list[str] = Field(description="Groups kept for the unified model.")
    tasks: list[TaskPlan] = Field(description="Every task: its group and whether it is kept.")
    stages: list[StagePlan] = Field(description="Stages to run, in order.")
    skipped: list[SkippedStage] = Field(default_factory=list, description="Stages left out.")
    batch_size: int = Field(description="Examples per optimizer step.")


class TaskRollout(StatusModel):
    """Where one task's traffic handover stands (serving.rollout), with the live comparison of
    the unified model against the old backend for the current step."""

    strategy: str = Field(description="Immediate, Shadow or Canary.")
    state: str = Field(
        description="Pending (not cut over yet), Shadow, Canary, Promoted or RolledBack.")
    revision: str | None = Field(None, description="The training revision being rolled out.")
    phase: int | None = Field(None, ge=0, description="Index of the current step among the "
                              "rollout's phases (the shadow phase first, if any).")
    weight: int = Field(0, ge=0, le=100, description="Percent of the task's requests the "
                        "unified model answers now.")
    requests: int | None = Field(None, ge=0, description="Requests compared in this step.")
    agreement: float | None = Field(None, ge=0, le=1, description="Share of the compared "
                                    "requests on which both sides agreed.")
    errors: float | None = Field(None, ge=0, le=1, description="Share of the unified model's "
                                 "answers in this step that failed.")
    since: str | None = Field(None, description="RFC 3339 time the current step began.")
    reason: str | None = Field(None, description="Why the last promotion or rollback happened, "
                               "or what the step waits for.")


class TaskStatus(StatusModel):
    """One task: its place in the plan, its scores and where its traffic goes."""

    name: str = Field(description="The task's name.")
    group: str | None = Field(None, description="Its filtering group.")
    included: bool | None = Field(None, description="Whether the unified model serves it.")
    reason: str | None = Field(None, description="Why it is in or out.")
    high_resource: bool | None = Field(None, description="Whether stage 1 trains it.")
    examples: int | None = Field(None, description="Training examples (after the eval split).")
    score: float | None = Field(None, description="The unified model's score, 0 to 1.")
    baseline: float | None = Field(None, description="The single-task score it is compared with.")
    qualified: bool | None = Field(
        None, description="score >= recipe.qualifyThreshold x baseline.")
    score_interval: list[float] | None = Field(
        None, description="95% bootstrap interval of the score over the eval examples.")
    baseline_interval: list[float] | None = Field(
        None, description="95% bootstrap interval of a trained baseline, same resamples.")
    majority: float | None = Field(
        None, description="Classification: the score of always answering the most frequent "
        "training label.")
    margin: float | None = Field(
        None, description="recipe.qualifyRule nonInferiority: the lower 95% bound of score - "
        "qualifyThreshold x baseline (>= 0 qualifies).")
    baseline_not_above_majority: bool | None = Field(
        None, description="True when the baseline does not beat the majority class: comparing "
        "the score with it then says nothing.")
    served_by: str | None = Field(None, description="unified, its own service, or none yet.")
    awaiting_approval: bool | None = Field(
        None, description="True while the task's cutover waits for an approval of the revision "
        "(serving.cutover Manual)."
    )
    rollout: TaskRollout | None = Field(
        None, description="The handover of the task's traffic (serving.rollout).")
    cutover_blocked: str | None = Field(
        None,
        description=(
            "Why the task's Service was not taken over, when it was refused: it is taken over "
            "by another MultiTaskModel, it selects a MultiTaskModel's pods, or it does not opt "
            "in with the annotation multitask.ai/takeover-by."
        ),
    )


class ServingStatus(StatusModel):
    """The unified model's serving: endpoint, revision, replicas and the cost figures."""

    endpoint: str | None = Field(None, description="The gateway's in-cluster URL.")
    revision: str | None = Field(None, description="Training revision being served.")
    replicas: int | None = Field(
        None, description="Inference replicas now: the Deployment's count (the HPA's choice "
        "with serving.autoscaling)."
    )
    gpus_before: int | None = Field(None, description="GPUs behind the per-task services before.")
    gpus_after: int | None = Field(
        None, description="GPUs of the unified deployment plus the services left."
    )
    gpus_retired: int | None = Field(
        None, description="GPUs of old per-task Deployments scaled to 0 (serving."
        "retireOldBackends): really freed. gpusBefore - gpusAfter is what could be freed."
    )
    cost_reduction: float | None = Field(None, description="1 - gpusAfter / gpusBefore.")
    cost_saving: str | None = Field(
        None, description="costReduction as a percentage, for kubectl get."
    )


class DataStatus(StatusModel):
    """What identifies each task's data, as last seen (the prepare step, or the data check)."""

    fingerprints: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="{task: {train: ..., eval?: ...}}: sha256:<hex> of a "
        "file, etag:/modified: of an http(s) or s3 object, hf:<commit> of a Hub dataset.")
    token: str | None = Field(
        None, description="Joins the revision hash once a task's data has changed, so that "
        "new data trains a new revision.")
    checked_at: str | None = Field(None, description="RFC 3339 time of the last data check.")
    message: str | None = Field(None, description="What the last data check found.")


class MultiTaskModelStatus(StatusModel):
    phase: Phase = Field(Phase.PENDING, description="Where the model is in its lifecycle.")
    message: str | None = Field(None, description="The latest event or failure, for people.")
    observed_generation: int | None = Field(
        None, description="The metadata.generation this status describes.")
    revision: str | None = Field(None, description="Hash of the training-relevant spec fields.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Trained, Evaluated and Deployed.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    progress: Progress | None = None
    plan: Plan | None = None
    tasks: list[TaskStatus] = Field(default_factory=list, description="One row per task.")
    task_count: int | None = Field(None, description="Tasks in the spec.")
    qualified_count: int | None = Field(None, description="Tasks that qualified.")
    serving: ServingStatus | None = None
    data: DataStatus | None = None
