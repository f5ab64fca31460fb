"""`MultiTaskModel.spec`: what the user declares. The single source of truth for the CRD schema.

Field descriptions become `kubectl explain` text. Cross-field rules live twice on purpose:
as pydantic validators (what `mtm validate` and the operator run, with field paths) and as CEL
`x-kubernetes-validations` (what the API server runs at `kubectl apply`). `tests/api` checks
that both agree on the same examples.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from .common import (
    DEFAULT_METRIC,
    DNS1123_LABEL,
    METRICS_BY_TYPE,
    QUANTITY,
    ApiModel,
    Cutover,
    Engine,
    Keep,
    Metric,
    Runtime,
    TaskFiltering,
    TaskType,
    Taxonomy,
    TrainingMethod,
    accepted,
    field_error,
)


def defaulted(model: type, description: str | None = None):
    """A nested object that may be omitted: pydantic builds it from defaults, and the CRD gets
    `default: {}` so that the API server fills the same nested defaults (CEL relies on them)."""
    return Field(
        default_factory=model, description=description, json_schema_extra={"default": {}}
    )


def cel(*rules: tuple[str, str]) -> dict:
    """json_schema_extra carrying CEL rules as (expression, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


Quantity = Annotated[str, Field(pattern=QUANTITY, examples=["64Gi"])]

# Accepted forms of a data location; see `multitask_operator.datafiles.parse_location`.
DATA_SCHEMES = ("pvc://", "http://", "https://", "s3://", "hf://datasets/")
DATA_LOCATION_HELP = (
    "a path, pvc://CLAIM/PATH, http(s)://..., s3://BUCKET/KEY or hf://datasets/OWNER/NAME[/FILE]"
)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def check_data_location(value: str) -> str:
    match = _SCHEME.match(value)
    if match and not value.startswith(DATA_SCHEMES):
        raise ValueError(f"scheme {match.group(1)}:// is not supported; use {DATA_LOCATION_HELP}")
    if value.startswith("pvc://") and "/" not in value[len("pvc://") :].strip("/"):
        raise ValueError("pvc:// locations need a claim and a path: pvc://CLAIM/PATH")
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
    "{f}.matches('^(pvc://[^/]+/.+|https?://.+|s3://.+|hf://datasets/.+)$')"
)


class TaskData(ApiModel):
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
    epochs: float = Field(
        2.0, gt=0, le=100, description="Passes over the high-resource tasks' data. Default 2."
    )


class Stage2(ApiModel):
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
            "examples-proportional, larger flattens toward uniform. Paper: 1.43, 2, 3.33. Default 2."
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
    train_baselines: bool = Field(
        False, description="Train single-task baselines for tasks without baseline.score."
    )


# --------------------------------------------------------------------------- training


class LoraSpec(ApiModel):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank. Default 16.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r). Default 32.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout. Default 0.05.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt; default: all linear layers."
    )


class Toleration(ApiModel):
    key: str | None = None
    operator: str | None = Field(None, pattern=r"^(Exists|Equal)$")
    value: str | None = None
    effect: str | None = Field(None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: int | None = None


class TrainingResources(ApiModel):
    gpus: int = Field(1, ge=0, le=64, description="GPUs per node (nvidia.com/gpu). Default 1.")
    cpu: Quantity | None = Field(None, description="CPU request per node, e.g. 8.")
    memory: Quantity = Field("64Gi", description="Memory per node. Default 64Gi.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector for training pods."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for training pods."
    )


class Workspace(ApiModel):
    claim_name: str | None = Field(
        None,
        description="Existing ReadWriteMany/ReadWriteOnce PVC to use; default: the operator "
        "creates one owned by the object.",
    )
    size: Quantity = Field("200Gi", description="Size of the PVC the operator creates.")
    storage_class_name: str | None = Field(None, description="StorageClass of that PVC.")


class Training(ApiModel):
    model_config = {
        "json_schema_extra": cel(
            (
                "!has(self.nodes) || self.nodes == 1 || !has(self.runtime) || "
                "self.runtime != 'job'",
                "training.nodes > 1 needs runtime jobset, kubeflow or indexedJob",
            )
        )
    }

    method: TrainingMethod = Field(
        TrainingMethod.LORA, description="lora (default, via peft) or full fine-tuning."
    )
    lora: LoraSpec = defaulted(LoraSpec)
    learning_rate: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Peak learning rate. Default 2e-4 for lora, 2e-5 for full.",
    )
    warmup_ratio: float = Field(
        0.03, ge=0, lt=1, description="Share of steps for linear warmup. Default 0.03."
    )
    batch_size: int = Field(
        16, ge=1, le=65536, description="Examples per optimizer step, all devices. Default 16."
    )
    max_seq_length: int = Field(
        1024,
        ge=16,
        le=1048576,
        description="Tokens per example; longer prompts are truncated on the input side.",
    )
    max_steps: int | None = Field(None, ge=1, description="Optional hard cap on steps per stage.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    checkpoint_every: int = Field(200, ge=1, description="Steps between checkpoints. Default 200.")
    seed: int = Field(0, ge=0, description="Seed of sampling, splits and initialization.")
    resources: TrainingResources = defaulted(TrainingResources)
    nodes: int = Field(1, ge=1, le=1024, description="Nodes per training stage. Default 1.")
    runtime: Runtime = Field(
        Runtime.JOB,
        description="job (1 node), jobset, kubeflow (Trainer TrainJob) or indexedJob.",
    )
    workspace: Workspace = defaulted(Workspace)
    queue_name: str | None = Field(None, description="Kueue LocalQueue for the training Jobs.")

    @model_validator(mode="after")
    def _runtime_fits_nodes(self) -> Training:
        if self.nodes > 1 and self.runtime == Runtime.JOB:
            raise field_error(
                "runtime",
                f"training.nodes is {self.nodes} but runtime 'job' runs one node; "
                "use jobset, kubeflow or indexedJob",
            )
        return self

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == TrainingMethod.LORA else 2e-5


# --------------------------------------------------------------------------- serving


class Autoscaling(ApiModel):
    model_config = {
        "json_schema_extra": cel(
            ("self.maxReplicas >= self.minReplicas", "maxReplicas must be >= minReplicas")
        )
    }

    min_replicas: int = Field(1, ge=1, description="Fewest inference replicas. Default 1.")
    max_replicas: int = Field(ge=1, description="Most inference replicas.")
    target_queue_size: float = Field(
        10, gt=0, description="Queued requests per replica the HPA aims for. Default 10."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise field_error(
                "maxReplicas",
                f"maxReplicas ({self.max_replicas}) must be >= minReplicas ({self.min_replicas})",
            )
        return self


class ServingResources(ApiModel):
    gpus: int = Field(1, ge=0, le=64, description="GPUs per inference replica. Default 1.")
    memory: Quantity | None = Field(None, description="Memory per inference replica.")


class Serving(ApiModel):
    engine: Engine = Field(Engine.TGI, description="tgi (default) or vllm.")
    image: str | None = Field(
        None, description="Inference image with a pinned tag; default from the operator config."
    )
    replicas: int = Field(1, ge=1, le=1000, description="Inference replicas. Default 1.")
    autoscaling: Autoscaling | None = Field(
        None, description="Scale replicas on the engine's queue size instead of replicas."
    )
    resources: ServingResources = defaulted(ServingResources)
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest prompt served. Default training.maxSeqLength."
    )
    max_total_tokens: int | None = Field(
        None, ge=2, description="Prompt plus generated tokens. Default maxInputTokens + 512."
    )
    cutover: Cutover = Field(
        Cutover.AUTO,
        description=(
            "Auto repoints qualified tasks' Services to the gateway; Manual waits for the "
            "annotation multitask.ai/approve-cutover; Off never touches them."
        ),
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
            if not any(t.type == keep for t in self.tasks):
                raise field_error("recipe.keep", f"recipe.keep is {keep} but no task has type {keep}")
            if self.recipe.task_filtering == TaskFiltering.NONE:
                raise field_error(
                    "recipe.keep",
                    f"recipe.keep {keep} needs taskFiltering byType or byTaxonomy; with none "
                    "there is a single group (use largest)",
                )
        return self

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

