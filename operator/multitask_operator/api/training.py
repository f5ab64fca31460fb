"""`spec.training`: how and where the recipe's stages train. Part of the spec tree of spec.py."""

from __future__ import annotations

from pydantic import Field, model_validator

from .common import (
    DNS1123_SUBDOMAIN,
    ApiModel,
    Quantity,
    Runtime,
    TrainingMethod,
    cel,
    defaulted,
    field_error,
)


class LoraSpec(ApiModel):
    """LoRA settings, used with training.method lora (the default)."""

    r: int = Field(16, ge=1, le=1024, description="LoRA rank. Default 16.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r). Default 32.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout. Default 0.05.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt; default: all linear layers."
    )


class Toleration(ApiModel):
    """A core/v1 Toleration of the training pods, e.g. for a tainted GPU pool."""

    key: str | None = Field(None, description="The taint key; empty with Exists: every taint.")
    operator: str | None = Field(None, pattern=r"^(Exists|Equal)$",
                                 description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="The taint value, with operator Equal.")
    effect: str | None = Field(None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$",
                               description="NoSchedule, PreferNoSchedule or NoExecute; "
                               "empty: every effect.")
    toleration_seconds: int | None = Field(
        None, description="With NoExecute: how long the pod stays bound after the taint.")


class TrainingResources(ApiModel):
    """What each training node (pod) requests, and where it may run."""

    gpus: int = Field(1, ge=0, le=64, description="GPUs per node (nvidia.com/gpu). Default 1.")
    cpu: Quantity | None = Field(None, description="CPU request per node, e.g. 8.")
    memory: Quantity = Field("64Gi", description="Memory per node. Default 64Gi.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="nodeSelector for training pods."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations for training pods."
    )


class StepResource(ApiModel):
    """What one non-training step's pod requests; an unset field takes training.resources'."""

    gpus: int | None = Field(None, ge=0, le=64, description="GPUs (nvidia.com/gpu).")
    cpu: Quantity | None = Field(None, description="CPU request, e.g. 4.")
    memory: Quantity | None = Field(None, description="Memory, e.g. 32Gi.")


class StepResources(ApiModel):
    """Resources of the steps that do not train. prepare and export need no GPU (they read
    and write files; export merges LoRA weights on the CPU), so they ask for none unless set
    here; evaluate scores every task with the model and takes training.resources unless set."""

    prepare: StepResource = defaulted(StepResource, "The prepare step. Default: no GPU.")
    evaluate: StepResource = defaulted(
        StepResource, "The evaluate step. Default: training.resources (GPUs score faster).")
    export: StepResource = defaulted(StepResource, "The export step. Default: no GPU.")


# The GPU count of a step whose stepResources do not say: none for prepare and export.
STEP_GPU_DEFAULTS = {"prepare": 0, "export": 0}


class Workspace(ApiModel):
    """The volume every step of every revision shares: data, checkpoints, exports, reports."""

    claim_name: str | None = Field(
        None,
        description="Existing ReadWriteMany/ReadWriteOnce PVC to use; default: the operator "
        "creates one owned by the object.",
    )
    size: Quantity = Field("200Gi", description="Size of the PVC the operator creates.")
    storage_class_name: str | None = Field(None, description="StorageClass of that PVC.")
    keep_revisions: int = Field(
        2, ge=1, le=100,
        description="Training revisions whose Jobs and workspace folders are kept: the most "
        "recent ones, the one being trained included; the revision being served is kept on "
        "top. Older ones are deleted (their folders by the next prepare step). Default 2.",
    )


class Training(ApiModel):
    """How each stage is trained: method, optimizer settings, resources and runtime."""

    model_config = {
        "json_schema_extra": cel(
            (
                "!has(self.nodes) || self.nodes == 1 || !has(self.runtime) || "
                "self.runtime != 'job'",
                "training.nodes > 1 needs runtime jobset, kubeflow or indexedJob",
            ),
            (
                "!has(self.fsdp) || !self.fsdp || !has(self.resources) || "
                "!has(self.resources.gpus) || self.resources.gpus >= 1",
                "training.fsdp shards the model over GPUs and needs resources.gpus >= 1",
            ),
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
    step_resources: StepResources = defaulted(
        StepResources, "Resources of prepare, evaluate and export (the steps that do not train).")
    nodes: int = Field(1, ge=1, le=1024, description="Nodes per training stage. Default 1.")
    runtime: Runtime = Field(
        Runtime.JOB,
        description="job (1 node), jobset, kubeflow (Trainer TrainJob) or indexedJob.",
    )
    fsdp: bool = Field(
        False,
        description="Shard parameters, gradients and optimizer state over all training GPUs "
        "(FSDP2) instead of a full copy per GPU (DDP): for models that do not fit one GPU. "
        "Same result; needs GPUs. Default false.",
    )
    workspace: Workspace = defaulted(Workspace)
    queue_name: str | None = Field(None, description="Kueue LocalQueue for the training Jobs.")
    data_check_interval_seconds: int = Field(
        0, ge=0, le=30 * 24 * 3600,
        description="How often a small Job checks whether any task's data changed in place "
        "(same location, new content: a file rewritten, an S3 object overwritten, a Hub "
        "dataset's new commit); a change trains a new revision. 0 (default): only when the "
        "annotation multitask.ai/check-data is set (any value).",
    )
    data_secret: str | None = Field(
        None, pattern=DNS1123_SUBDOMAIN, max_length=253,
        description="A Secret of the model's namespace whose keys become environment variables "
        "of the prepare step only, the one that reads the data: AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_ENDPOINT_URL (s3://, "
        "S3-compatible stores too), HF_TOKEN (hf://). Changing it retrains nothing.",
    )

    @model_validator(mode="after")
    def _runtime_fits_nodes(self) -> Training:
        if self.nodes > 1 and self.runtime == Runtime.JOB:
            raise field_error(
                "runtime",
                f"training.nodes is {self.nodes} but runtime 'job' runs one node; "
                "use jobset, kubeflow or indexedJob",
            )
        if self.fsdp and self.resources.gpus < 1:
            raise field_error(
                "fsdp", "training.fsdp shards the model over GPUs and needs resources.gpus >= 1"
            )
        return self

    @property
    def effective_learning_rate(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == TrainingMethod.LORA else 2e-5
