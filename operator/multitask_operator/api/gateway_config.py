"""The gateway's configuration, one model for both sides: the operator's renderer builds it (and
writes `to_wire()` into the gateway's ConfigMap), the gateway reads it with `model_validate`.

    {"model": "support-assistant", "revision": "1a2b3c4d", "servedModelName": "support-assistant",
     "promptFormat": {"prefix": "...", "suffix": "...", "source": "chat_template"},
     "limits": {"maxBodyBytes": 1048576, "maxNewTokens": 512, "defaultMaxNewTokens": 256,
                "maxConcurrencyPerTask": 64, "timeoutSeconds": 120},
     "tasks": [{"name": "intent", "type": "classification", "instruction": "...",
                "labels": ["refund", "other"], "adapter": "classification",
                "service": "intent-svc"}]}

A hand-written config (`mtm gateway --config`) is a supported use, so every mistake is one
sentence naming the field (`multitask_gateway.config.parse_config` formats the errors). Pure:
pydantic only.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ..prompting import PLAIN, PromptFormat
from .common import DNS1123_LABEL, TaskType

PositiveInt = Annotated[StrictInt, Field(gt=0)]
PositiveSeconds = Annotated[StrictInt | StrictFloat, Field(gt=0, allow_inf_nan=False)]


def config_error(field: str, message: str, separator: str = ": ") -> PydanticCustomError:
    """An error about `field` (below the model being validated), worded `message`; the
    formatter writes `<path><separator><message>`."""
    return PydanticCustomError("mtm_config", "{message}",
                               {"field": field, "message": message, "separator": separator})


class _ConfigModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Limits(_ConfigModel):
    max_body_bytes: PositiveInt = 1 << 20
    max_new_tokens: PositiveInt = 512  # requests asking for more are refused
    default_max_new_tokens: PositiveInt = 256  # used when a request does not say
    max_concurrency_per_task: PositiveInt = 64  # more in flight for one task -> 429
    timeout_seconds: PositiveSeconds = 120.0  # longest wait for the upstream's next byte
    # A client connection that has not sent a whole request this long after it opened (slow
    # headers), or after its last answer (idle keep-alive), is closed.
    idle_timeout_seconds: PositiveSeconds = 15.0
    body_timeout_seconds: PositiveSeconds = 30.0  # longest wait for a request's body -> 408

    @model_validator(mode="before")
    @classmethod
    def _default_follows_a_lower_cap(cls, data: Any) -> Any:
        # A lower cap alone lowers the default with it, rather than contradicting it.
        if isinstance(data, dict):
            cap = data.get("maxNewTokens", data.get("max_new_tokens"))
            given = "defaultMaxNewTokens" in data or "default_max_new_tokens" in data
            if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 and not given:
                data = {**data, "defaultMaxNewTokens": min(256, cap)}
        return data

    @model_validator(mode="after")
    def _default_within_cap(self) -> Limits:
        if self.default_max_new_tokens > self.max_new_tokens:
            raise config_error(
                "defaultMaxNewTokens", f"({self.default_max_new_tokens}) must not exceed "
                f"maxNewTokens ({self.max_new_tokens})", " ")
        return self


class RolloutRoute(_ConfigModel):
    """A task whose old Service is being handed over (spec.serving.rollout): of the requests
    that arrive through that Service, `weight` percent are answered by the unified model and the
    rest by `legacy`, the old backend behind the stable Service the operator keeps for it,
    which gets each request exactly as the client sent it. A `sampleRate` share is also sent to
    the side that does not answer, and the two answers are compared (metrics only)."""

    legacy: Annotated[StrictStr, Field(pattern=r"^https?://[^\s/]+(:[0-9]+)?/?$")]
    weight: Annotated[StrictInt, Field(ge=0, le=100)] = 0
    sample_rate: Annotated[StrictInt | StrictFloat, Field(gt=0, le=1)] = 1.0
    similarity: Annotated[StrictInt | StrictFloat, Field(ge=0, le=1)] = 0.5
    step: Annotated[StrictStr, Field(min_length=1, max_length=63)] = "rollout"


class TaskRoute(_ConfigModel):
    name: Annotated[StrictStr, Field(pattern=DNS1123_LABEL)]
    type: TaskType
    instruction: StrictStr
    labels: tuple[Annotated[StrictStr, Field(min_length=1)], ...] = ()
    adapter: StrictStr | None = None  # LoRA adapter group; None serves the merged model
    service: StrictStr | None = None  # the task's old per-task Service, matched on Host
    rollout: RolloutRoute | None = None  # its traffic is being handed over (needs `service`)

    @model_validator(mode="after")
    def _labels_fit_the_type(self) -> TaskRoute:
        if self.type == TaskType.CLASSIFICATION and len(self.labels) < 2:
            raise config_error("labels", "a classification task needs at least 2 labels")
        if self.type == TaskType.GENERATION and self.labels:
            raise config_error("labels", "only classification tasks have labels")
        if self.rollout is not None and not self.service:
            raise config_error("rollout", "a rollout splits the traffic of the task's old "
                               "Service: set service too")
        return self

    @property
    def classification(self) -> bool:
        return self.type == TaskType.CLASSIFICATION

    def to_wire(self) -> dict[str, Any]:
        wire = super().to_wire()
        if not self.labels:
            wire.pop("labels", None)
        return wire


class GatewayConfig(_ConfigModel):
    model: StrictStr = "model"
    revision: StrictStr | None = None
    served_model_name: StrictStr | None = None  # vLLM's --served-model-name; default `model`
    prompt_format: PromptFormat = PLAIN
    limits: Limits = Field(default_factory=Limits)
    # Whether a request that came through one task's old Service may ask for another task.
    cross_task_access: StrictBool = False
    task_list: tuple[TaskRoute, ...] = Field(alias="tasks", min_length=1)

    @model_validator(mode="after")
    def _names_and_services_unique(self) -> GatewayConfig:
        tasks: dict[str, TaskRoute] = {}
        services: dict[str, TaskRoute] = {}
        for i, task in enumerate(self.task_list):
            if task.name in tasks:
                raise config_error(f"tasks.{i}.name", f"'{task.name}' appears twice", " ")
            if task.service and task.service in services:
                raise config_error(
                    f"tasks.{i}.service", f"'{task.service}' is already the service of task "
                    f"'{services[task.service].name}'", " ")
            tasks[task.name] = task
            if task.service:
                services[task.service] = task
        return self

    # Cached on the instance (a plain attribute read on every request, where a pydantic
    # private attribute costs a __getattr__ call).
    @cached_property
    def tasks(self) -> dict[str, TaskRoute]:
        """Task name -> route."""
        return {task.name: task for task in self.task_list}

    @cached_property
    def by_service(self) -> dict[str, TaskRoute]:
        """Old Service name -> task, for Host-header routing."""
        return {task.service: task for task in self.task_list if task.service}

    def replace(self, **changes: Any) -> GatewayConfig:
        """A copy with `changes` (field names), validated again."""
        data = {**self.model_dump(), **changes}
        data["task_list"] = [t.model_dump() if isinstance(t, TaskRoute) else t
                             for t in data["task_list"]]
        return GatewayConfig.model_validate(data)

    def digest(self) -> str:
        """wire_hash of this config: what the gateway reports it serves."""
        return wire_hash(self.to_wire())

    def to_wire(self) -> dict[str, Any]:
        """The JSON of the ConfigMap: the fields that were given (a renderer's choices, not
        every default), so that a new optional field changes no existing config's hash."""
        wire = self.model_dump(by_alias=True, exclude_none=True, exclude_unset=True, mode="json",
                               exclude={"task_list", "cross_task_access"})
        wire["tasks"] = [t.to_wire() for t in self.task_list]
        if self.cross_task_access:  # only when set: existing configs keep their hash
            wire["crossTaskAccess"] = True
        return wire


def wire_hash(wire: dict[str, Any]) -> str:
    """The hash of a config's JSON that the operator and the gateway both compute: the gateway
    reports it (mtm_gateway_config_info), the operator compares it with what it rendered."""
    return hashlib.sha256(json.dumps(wire, sort_keys=True).encode()).hexdigest()[:16]


def static_wire(wire: dict[str, Any]) -> dict[str, Any]:
    """The config without its rollout routes: what needs a new gateway process when it changes
    (a rollout's weights are reloaded from the mounted file by the running one)."""
    return {**wire, "tasks": [{k: v for k, v in t.items() if k != "rollout"}
                              for t in wire.get("tasks", [])]}
