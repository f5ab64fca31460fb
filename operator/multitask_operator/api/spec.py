"""`MultiTaskModel.spec`: what the user declares. The single source of truth for the CRD schema.

Field descriptions become `kubectl explain` text. Cross-field rules live twice on purpose:
as pydantic validators (what `mtm validate` and the operator run, with field paths) and as CEL
`x-kubernetes-validations` (what the API server runs at `kubectl apply`). `tests/api` checks
that both agree on the same examples.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .common import (
    DEFAULT_METRIC,
    DNS1123_LABEL,
    METRICS_BY_TYPE,
    ApiModel,
    Keep,
    Metric,
    TaskFiltering,
    TaskType,
    Taxonomy,
    accepted,
    cel,
    defaulted,
    field_error,
)
from .serving import Serving
from .training import Training

# Accepted forms of a data location; see `multitask_operator.datafiles.parse_location`.
DATA_SCHEMES = ("pvc://", "http://", "https://", "s3://", "hf://datasets/")
DATA_LOCATION_HELP = (
    "a path, pvc://CLAIM/PATH, http(s)://..., s3://BUCKET/KEY or "
    "hf://datasets/OWNER/NAME[@REVISION][/FILE]"
)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def check_data_location(value: str) -> str:
    match = _SCHEME.match(value)
    if match and not value.startswith(DATA_SCHEMES):
        raise ValueError(f"scheme {match.group(1)}:// is not supported; use {DATA_LOCATION_HELP}")
    if value.startswith("pvc://") and "/" not in value[len("pvc://") :].strip("/"):
        raise ValueError("pvc:// locations need a claim and a path: pvc://CLAIM/PATH")
    if value.startswith("pvc://") and ".." in value[len("pvc://") :].split("/"):
        raise ValueError("pvc:// locations may not contain '..' segments: the path is inside "
                         "the claim, pvc://CLAIM/PATH")
    return value


# --------------------------------------------------------------------------- base model


class SecretKeyRef(ApiModel):
    name: str = Field(min_length=1, description="Name of a Secret in the object's namespace.")
    key: str = Field("token", min_length=1, description="Key in the Secret. Default: token.")


class BaseModelSpec(ApiModel):
    """The model every task is fine-tuned from."""

    model_config = {
        "json_schema_extra": cel(
            ("has(self.id) != has(self.path)", "set exactly one of baseModel.id or baseModel.path")
        )
    }

    id: str | None = Field(
        None,
        min_length=1,
        description="Hugging Face Hub model id, e.g. Qwen/Qwen2.5-1.5B-Instruct.",
        examples=["Qwen/Qwen2.5-1.5B-Instruct"],
    )
    path: str | None = Field(
        None,
        min_length=1,
        description=(
            "A directory holding the model (config, tokenizer, weights): a path on the workspace "
            "volume in a cluster; a local directory, relative to the YAML file, for `mtm run`."
        ),
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    hf_token_secret: SecretKeyRef | None = Field(
        None, description="Secret holding a Hugging Face token for gated or private models."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> BaseModelSpec:
        if (self.id is None) == (self.path is None):
            which = "both are set" if self.id else "neither is set"
            raise field_error("id", f"set exactly one of baseModel.id or baseModel.path; {which}")
        return self


# --------------------------------------------------------------------------- tasks


_LOCATION_CEL = (
    "!{f}.matches('^[a-zA-Z][a-zA-Z0-9+.-]*://') || "
    "({f}.matches('^(pvc://[^/]+/.+|https?://.+|s3://.+|hf://datasets/.+)$') && "
    "!({f}.startsWith('pvc://') && {f}.matches('/[.][.](/|$)')))"
)


class TaskData(ApiModel):
    """Where the task's examples are: JSON Lines of {input, output}."""

    model_config = {
        "json_schema_extra": cel(
            (_LOCATION_CEL.format(f="self.train"), f"data.train must be {DATA_LOCATION_HELP}"),
            (
                "!has(self.eval) || " + _LOCATION_CEL.format(f="self.eval"),
                f"data.eval must be {DATA_LOCATION_HELP}",
            ),
        )
    }

    train: str = Field(
        min_length=1,
        description=f"Training data, JSON Lines of {{input, output}}: {DATA_LOCATION_HELP}.",
        examples=["pvc://datasets/intent/train.jsonl"],
    )
    eval: str | None = Field(
        None,
        min_length=1,
        description="Evaluation data in the same format; default: evalFraction of train, held out.",
    )
    eval_fraction: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Share of train held out for evaluation when eval is not set. Default 0.1.",
    )

    _check_train = field_validator("train")(check_data_location)

    @field_validator("eval")
    @classmethod
    def _check_eval(cls, value: str | None) -> str | None:
        return None if value is None else check_data_location(value)


class Baseline(ApiModel):
    score: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "Single-task score of today's model on the task's metric, in [0, 1] (chrF is "
            "divided by 100). Without it the task qualifies only if recipe.trainBaselines is on."
        ),
    )
    gpus: int = Field(
        1,
        ge=0,
        description=(
            "GPUs the task's dedicated service uses today; used for the serving cost when the "
            "pods behind service.name cannot be read. Default 1."
        ),
    )


class TaskService(ApiModel):
    name: str = Field(
        pattern=DNS1123_LABEL,
        max_length=63,
        description="Existing per-task Service (same namespace) that the gateway takes over.",
    )


class Task(ApiModel):
    """One NLP task that is served by its own fine-tuned model today."""

    model_config = {
        "json_schema_extra": cel(
            (
                "!has(self.labels) || self.type == 'classification'",
                "labels are only allowed on classification tasks",
            ),
            (
                "!has(self.taxonomy) || self.type == 'classification'",
                "taxonomy is only allowed on classification tasks",
            ),
            (
                "!has(self.metric) || (self.type == 'classification' ? "
                "self.metric in ['accuracy', 'macro_f1'] : "
                "self.metric in ['exact_match', 'rouge_l', 'chrf'])",
                "metric must fit the task type: accuracy or macro_f1 for classification, "
                "exact_match, rouge_l or chrf for generation",
            ),
            (
                "!has(self.labels) || !has(self.taxonomy) || self.taxonomy != 'binary' "
                "|| size(self.labels) == 2",
                "a binary task has exactly 2 labels",
            ),
        )
    }

    name: str = Field(
        pattern=DNS1123_LABEL,
        max_length=40,
        description="Task name: a DNS-1123 label of at most 40 characters, unique in the object.",
        examples=["intent"],
    )
    type: TaskType = Field(description="classification (output is one label) or generation.")
    taxonomy: Taxonomy | None = Field(
        None,
        description=(
            "Kind of classification, used by recipe.taskFiltering byTaxonomy: binary, ordinal or "
            "multiclass. Default: binary for 2 labels, multiclass otherwise."
        ),
    )
    labels: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=2,
        max_length=1000,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Classification labels; inferred from the training data when absent.",
    )
    instruction: str = Field(
        min_length=1,
        max_length=4000,
        description="What the model is told to do; it tells the tasks apart in one model.",
        examples=["Classify the customer's intent."],
    )
    data: TaskData
    metric: Metric | None = Field(
        None,
        description=(
            "accuracy or macro_f1 for classification (default accuracy); exact_match, rouge_l "
            "or chrf for generation (default rouge_l)."
        ),
    )
    baseline: Baseline = defaulted(Baseline, "How the task is served today.")
    high_resource: bool | None = Field(
        None,
        description=(
            "Force the task into (true) or out of (false) stage 1. Default: "
            "examples >= recipe.highResourceThreshold."
        ),
    )
    service: TaskService | None = Field(
        None, description="The task's existing Service, repointed to the gateway on cutover."
    )

    @model_validator(mode="after")
    def _fits_type(self) -> Task:
        classification = self.type == TaskType.CLASSIFICATION
        if self.labels is not None and not classification:
            raise field_error("labels", "labels are only allowed on classification tasks")
        if self.taxonomy is not None and not classification:
            raise field_error("taxonomy", "taxonomy is only allowed on classification tasks")
        fitting = METRICS_BY_TYPE[self.type]
        if self.metric is not None and self.metric not in fitting:
            raise field_error(
                "metric",
                f"'{self.metric}' does not fit a {self.type} task; accepted: {accepted(fitting)}",
            )
        if self.labels is not None:
            duplicates = sorted({x for x in self.labels if self.labels.count(x) > 1})
            if duplicates:
                raise field_error("labels", f"labels must be unique; repeated: {duplicates}")
            if self.taxonomy == "binary" and len(self.labels) != 2:
                raise field_error(
                    "labels", f"a binary task has exactly 2 labels, got {len(self.labels)}"
                )
        return self

    @property
    def effective_metric(self) -> str:
        return self.metric or DEFAULT_METRIC[self.type]


# --------------------------------------------------------------------------- recipe


class Stage1(ApiModel):
    """Stage 1: the high-resource tasks first, mixed in proportion to their sizes."""

    epochs: float = Field(
        2.0, gt=0, le=100, description="Passes over the high-resource tasks' data. Default 2."
    )


class Stage2(ApiModel):
    """Stage 2: every kept task, from stage 1's weights, temperature-scaled under a size cap."""

    epochs: float = Field(
        1.0,
        gt=0,
        le=100,
        description="Passes over sum_i min(n_i, datasetSizeLimit) examples. Default 1.",
    )
    temperature: float = Field(
        2.0,
        gt=0,
        le=1000,
        description=(
            "tau in p_i = min(n_i, K)^(1/tau) / sum_j min(n_j, K)^(1/tau): 1 is "
            "examples-proportional, larger flattens toward uniform. "
            "Paper: 1.43, 2, 3.33. Default 2."
        ),
    )
    dataset_size_limit: int = Field(
        50000,
        ge=1,
        description=(
            "K, the artificial dataset-size limit: a task counts as at most K examples when "
            "mixing (a very large K means no limit). Default 50000."
        ),
    )


class Recipe(ApiModel):
    """The three-stage recipe of arXiv 2411.03644."""

    task_filtering: TaskFiltering = Field(
        TaskFiltering.BY_TYPE,
        description=(
            "How tasks are grouped before one group is kept: byType (classification vs "
            "generation), byTaxonomy (binary / ordinal / multiclass / generation) or none."
        ),
    )
    keep: Keep = Field(
        Keep.LARGEST,
        description=(
            "Which group becomes the unified model: largest (most tasks), classification, "
            "generation, or all-as-adapters (every group, one LoRA adapter each)."
        ),
    )
    high_resource_threshold: int = Field(
        10000,
        ge=1,
        description="Tasks with at least this many training examples are trained in stage 1.",
    )
    stage1: Stage1 = defaulted(Stage1)
    stage2: Stage2 = defaulted(Stage2)
    qualify_threshold: float = Field(
        0.99,
        gt=0,
        le=1,
        description="A task qualifies when its score >= qualifyThreshold x baseline. Default 0.99.",
    )
    qualify_rule: Literal["point", "nonInferiority"] = Field(
        "point",
        description="point (default, the paper's): score >= qualifyThreshold x baseline. "
        "nonInferiority: the lower end of the 95% bootstrap interval of score - "
        "qualifyThreshold x baseline, paired over the eval examples when the baseline is "
        "trained, is at least 0; noise then cannot qualify a task.",
    )
    train_baselines: bool = Field(
        False, description="Train single-task baselines for tasks without baseline.score."
    )


# --------------------------------------------------------------------------- the spec


class MultiTaskModelSpec(ApiModel):
    model_config = {
        "json_schema_extra": cel(
            (
                "self.recipe.keep != 'classification' || "
                "self.tasks.exists(t, t.type == 'classification')",
                "recipe.keep is classification but no task has type classification",
            ),
            (
                "self.recipe.keep != 'generation' || self.tasks.exists(t, t.type == 'generation')",
                "recipe.keep is generation but no task has type generation",
            ),
            (
                "!(self.recipe.keep in ['classification', 'generation']) || "
                "self.recipe.taskFiltering != 'none'",
                "recipe.keep classification or generation needs taskFiltering byType or byTaxonomy",
            ),
        )
    }

    base_model: BaseModelSpec
    tasks: list[Task] = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        description="The tasks to serve with one model (1 to 100, names unique).",
    )
    recipe: Recipe = defaulted(Recipe)
    training: Training = defaulted(Training)
    serving: Serving = defaulted(Serving)

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[Task]) -> list[Task]:
        seen: set[str] = set()
        for task in tasks:
            if task.name in seen:
                raise ValueError(f"task names must be unique; '{task.name}' appears twice")
            seen.add(task.name)
        return tasks

    @model_validator(mode="after")
    def _keep_has_tasks(self) -> MultiTaskModelSpec:
        keep = self.recipe.keep
        if keep in (Keep.CLASSIFICATION, Keep.GENERATION):
            if not any(str(t.type) == str(keep) for t in self.tasks):
                raise field_error(
                    "recipe.keep", f"recipe.keep is {keep} but no task has type {keep}"
                )
            if self.recipe.task_filtering == TaskFiltering.NONE:
                raise field_error(
                    "recipe.keep",
                    f"recipe.keep {keep} needs taskFiltering byType or byTaxonomy; with none "
                    "there is a single group (use largest)",
                )
        names = {t.name for t in self.tasks}
        for i, approval in enumerate(self.serving.approvals):
            for j, task in enumerate(approval.tasks or []):
                if task not in names:
                    raise field_error(
                        f"serving.approvals.{i}.tasks.{j}",
                        f"'{task}' is not a task of this model; tasks: {', '.join(sorted(names))}",
                    )
        return self

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)
