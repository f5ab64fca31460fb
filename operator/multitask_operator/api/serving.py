"""`spec.serving`: the unified inference deployment. Part of the spec tree of spec.py."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from .common import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ApiModel,
    Cutover,
    Engine,
    Quantity,
    RolloutStrategy,
    cel,
    defaulted,
    field_error,
)
from .training import Toleration


class Autoscaling(ApiModel):
    model_config = {
        "json_schema_extra": cel(
            ("self.maxReplicas >= self.minReplicas", "maxReplicas must be >= minReplicas")
        )
    }

    min_replicas: int = Field(
        1, ge=1, le=1000, description="Fewest inference replicas. Default 1."
    )
    max_replicas: int = Field(ge=1, le=1000, description="Most inference replicas.")
    target_queue_size: float = Field(
        10, gt=0, description=(
            "Requests waiting per replica that the HPA aims for: the target averageValue of "
            "the engine's queue metric. Default 10."
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.max_replicas < self.min_replicas:
            raise field_error(
                "maxReplicas",
                f"maxReplicas ({self.max_replicas}) must be >= minReplicas ({self.min_replicas})",
            )
        return self


class Placement(ApiModel):
    """Where a serving component's pods may run: the core/v1 PodSpec fields of the same names.
    A field set here replaces the operator config's default for it (MTM_*_PLACEMENT)."""

    node_selector: dict[str, str] | None = Field(
        None, description="nodeSelector, e.g. {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}.")
    tolerations: list[Toleration] | None = Field(
        None, description="Tolerations, e.g. for a tainted GPU pool.")
    affinity: dict[str, Any] | None = Field(
        None, description="A core/v1 Affinity (nodeAffinity, podAffinity, podAntiAffinity).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    priority_class_name: str | None = Field(None, description="A PriorityClass name.")

    def merged_over(self, default: Placement) -> Placement:
        """This placement, with `default`'s value for every field it leaves unset."""
        return Placement.model_validate({**default.model_dump(exclude_none=True),
                                         **self.model_dump(exclude_none=True)})

    def pod_fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.node_selector:
            out["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            out["tolerations"] = [t.to_wire() for t in self.tolerations]
        if self.affinity:
            out["affinity"] = dict(self.affinity)
        if self.priority_class_name:
            out["priorityClassName"] = self.priority_class_name
        return out


class ServingResources(ApiModel):
    """What each inference replica requests."""

    gpus: int = Field(1, ge=0, le=64, description="GPUs per inference replica. Default 1.")
    memory: Quantity | None = Field(None, description="Memory per inference replica.")


class Approval(ApiModel):
    """An approval of the cutover of some tasks of one training revision (cutover Manual)."""

    revision: str = Field(
        pattern=r"^[0-9a-f]{8}$",
        description=(
            "The training revision approved (status.revision). An approval names one revision: "
            "it does nothing for any other, so a retrained model waits for a new one."
        ),
        examples=["1a2b3c4d"],
    )
    tasks: list[Annotated[str, Field(pattern=DNS1123_LABEL, max_length=63,
                                     description="A task name.")]] | None = Field(
        None,
        description="Tasks whose cutover is approved; absent: every qualified task.",
    )


PUBLISH_PREFIX = "publish-"


class ModelStorage(ApiModel):
    """Where each revision's model is published for serving, so that inference pods never mount
    the training workspace (a ReadWriteOnce volume attaches to one node): a `publish-<hash>`
    step after export copies `revisions/<rev>/export/` to URI/<rev>/, and an init container of
    every inference pod (`mtm fetch-model`, in the operator's small image) copies it from there
    into a node-local emptyDir the engine reads, as KServe's storage initializer does."""

    uri: str = Field(
        pattern=r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?|"
                r"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/\S+)$",
        description="s3://BUCKET[/PREFIX] (S3 or an S3-compatible store), or pvc://CLAIM/PATH "
        "on a claim every inference node can mount (ReadWriteMany, e.g. NFS, CephFS, EFS).",
        examples=["s3://models/support-assistant"],
    )
    secret: str | None = Field(
        None, pattern=DNS1123_SUBDOMAIN, max_length=253,
        description="A Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, "
        "AWS_ENDPOINT_URL, ...) become environment variables of the publish step and of the "
        "inference pods' init container only.",
    )
    cache_size: Quantity = Field(
        "100Gi", description="Size limit of the emptyDir holding the model in each inference "
        "pod (node-local disk). Default 100Gi.")

    @property
    def step(self) -> str:
        """The publish step's name: a new URI publishes again, a revision's export is reused."""
        import hashlib

        return PUBLISH_PREFIX + hashlib.sha256(self.uri.rstrip("/").encode()).hexdigest()[:8]


class Rollout(ApiModel):
    """How each task's traffic moves from its old Service to the unified model, task by task.

    Immediate moves it all at cutover. Shadow keeps answering from the old backend while the
    gateway mirrors a sample of requests to the unified model and compares the answers; it
    promotes the task once they agree. Canary sends a growing share (`steps`) to the unified
    model, comparing a sample of requests on both sides at every step; `shadowFirst` adds a
    shadow phase before the first step. A step is promoted once it has held `intervalSeconds`
    with at least `minRequests` compared requests, agreement >= agreementFloor and an error
    rate <= errorCeiling; the task is rolled back (its Service restored) as soon as a sample of
    minRequests breaks either threshold.
    """

    model_config = {
        "json_schema_extra": cel(
            ("!has(self.steps) || self.steps.all(s, s >= 1 && s <= 100)",
             "every step is a percentage, 1 to 100"),
            ("!has(self.steps) || size(self.steps) == 0 || "
             "self.steps[size(self.steps) - 1] == 100", "the last step is 100"),
        )
    }

    strategy: RolloutStrategy = Field(
        RolloutStrategy.IMMEDIATE,
        description="Immediate (default: every task at once, at cutover), Shadow or Canary.",
    )
    shadow_first: bool = Field(
        False, description="Canary: hold a shadow phase (no client answered by the unified "
        "model) before the first step.")
    steps: list[int] = Field(
        default_factory=lambda: [10, 50, 100], max_length=20,
        description="Canary: the percentages of a task's requests answered by the unified "
        "model, increasing, ending at 100. Default [10, 50, 100].")
    interval_seconds: int = Field(
        300, ge=0, le=7 * 24 * 3600,
        description="Least time each step (and the shadow phase) holds before promotion. "
        "Default 300.")
    min_requests: int = Field(
        50, ge=1, le=1_000_000,
        description="Compared requests a step needs before it is promoted, and the sample "
        "after which a broken threshold rolls the task back. Default 50.")
    sample_rate: float = Field(
        1.0, gt=0, le=1,
        description="Fraction of a task's requests also sent to the other side and compared "
        "(the client gets one answer only). Default 1.0; lower it for costly generation.")
    agreement_floor: float = Field(
        0.9, ge=0, le=1,
        description="Least share of compared requests on which both sides agree: the same "
        "label (classification), chrF >= similarityThreshold (generation). Default 0.9.")
    error_ceiling: float = Field(
        0.02, ge=0, le=1,
        description="Largest share of the unified model's answers (mirrored ones included) "
        "that may fail (5xx, timeouts). Default 0.02.")
    similarity_threshold: float = Field(
        0.5, ge=0, le=1,
        description="Generation: the chrF (0 to 1) between the two answers above which they "
        "agree. Default 0.5.")

    @model_validator(mode="after")
    def _steps_increase(self) -> Rollout:
        steps = self.steps
        if not steps:
            if self.strategy == RolloutStrategy.CANARY:
                raise field_error("steps", "a Canary rollout needs at least one step")
            return self
        if any(not 1 <= s <= 100 for s in steps):
            raise field_error("steps", f"steps {steps}: every step is a percentage, 1 to 100")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise field_error("steps", f"steps {steps} must increase")
        if steps[-1] != 100:
            raise field_error("steps", f"steps {steps} must end at 100")
        return self

    def phases(self) -> list[int | None]:
        """The weights a task goes through after cutover, None standing for the shadow phase
        (weight 0, compared), 100 last. Empty for Immediate."""
        if self.strategy == RolloutStrategy.SHADOW:
            return [None, 100]
        if self.strategy == RolloutStrategy.CANARY:
            return ([None] if self.shadow_first else []) + list(self.steps)
        return []


class Serving(ApiModel):
    """How the unified model is served and how traffic moves to it."""

    engine: Engine = Field(Engine.TGI, description="tgi (default) or vllm.")
    image: str | None = Field(
        None, description="Inference image with a pinned tag; default from the operator config."
    )
    replicas: int = Field(
        1, ge=1, le=1000, description="Inference replicas without autoscaling. Default 1."
    )
    autoscaling: Autoscaling | None = Field(
        None,
        description=(
            "Scale the inference replicas with a HorizontalPodAutoscaler on the engine's queue "
            "(tgi_queue_size, vllm_num_requests_waiting) from the custom metrics API, and the "
            "gateway on CPU; replicas is then ignored."
        ),
    )
    resources: ServingResources = defaulted(ServingResources)
    model_storage: ModelStorage | None = Field(
        None, description="Publish each revision's model to object storage or a shared claim "
        "and copy it into every inference pod, instead of mounting the training workspace "
        "read-only (which needs a ReadWriteMany workspace, or every replica on its node).")
    placement: Placement = defaulted(
        Placement, "Where the inference pods run (over the operator's MTM_INFERENCE_PLACEMENT).")
    gateway_placement: Placement = defaulted(
        Placement, "Where the gateway pods run (over the operator's MTM_GATEWAY_PLACEMENT).")
    max_input_tokens: int | None = Field(
        None, ge=1, description="Longest prompt served. Default training.maxSeqLength."
    )
    max_total_tokens: int | None = Field(
        None, ge=2, description="Prompt plus generated tokens. Default maxInputTokens + 512."
    )
    cutover: Cutover = Field(
        Cutover.AUTO,
        description=(
            "Auto repoints qualified tasks' Services to the gateway; Manual waits for an "
            "approval of the revision (serving.approvals, or the annotation "
            "multitask.ai/approve-cutover: REVISION[:task,task]); Off never touches them."
        ),
    )
    retire_old_backends: bool = Field(
        False,
        description=(
            "Once a task's Service has been on the gateway for retireAfterSeconds, scale the "
            "Deployments behind its old selector to 0 (their replica counts are recorded on "
            "them), so that the saving is real; any restore scales them back first and waits "
            "for a ready pod. Argo CD users: ignore those Deployments' /spec/replicas."
        ),
    )
    retire_after_seconds: int = Field(
        3600, ge=0, le=30 * 24 * 3600,
        description="How long a task serves from the gateway before its old backend is retired.",
    )
    rollout: Rollout = defaulted(
        Rollout, "How each task's traffic moves to the unified model: Immediate (default), "
        "Shadow or Canary, with the thresholds that promote or roll it back.")
    approvals: list[Approval] = Field(
        default_factory=list,
        description=(
            "With cutover Manual: which tasks of which training revision may be cut over, "
            "kept in Git with the rest of the spec. Changing it re-rolls nothing."
        ),
    )
    cross_task_access: bool = Field(
        False,
        description=(
            "Whether a request that arrives through one task's old Service may ask the gateway "
            "for another task (by path, X-Task header or OpenAI model). Default false: each "
            "old Service reaches its own task only, as before the cutover; the gateway's own "
            "Service reaches every task."
        ),
    )
