"""Shared pieces of the API models: the base class, enums and the custom error type.

Every model is camelCase on the wire (the Kubernetes convention) and snake_case in Python.
Unknown fields are rejected by `mtm validate`; the generated CRD drops
`additionalProperties: false` because the API server prunes unknown fields itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# Kubernetes DNS-1123 label: what a task name becomes in Job, Service and label values.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A resource.Quantity such as 64Gi, 500m or 1.5.
QUANTITY = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"


class ApiModel(BaseModel):
    """Base of every spec model: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Base of status models: tolerant of fields written by newer operators."""

    model_config = ConfigDict(extra="ignore")


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error about `field` of the model being validated, raised from a model validator.

    Pydantic gives model-validator errors the location of the model; the error formatter
    appends `field` so that the user sees e.g. `spec.tasks[2].metric` rather than `spec.tasks[2]`.
    """
    return PydanticCustomError("mtm_field", "{message}", {"field": field, "message": message})


class TaskType(StrEnum):
    CLASSIFICATION = "classification"
    GENERATION = "generation"


class Taxonomy(StrEnum):
    BINARY = "binary"
    ORDINAL = "ordinal"
    MULTICLASS = "multiclass"


class Metric(StrEnum):
    ACCURACY = "accuracy"
    MACRO_F1 = "macro_f1"
    EXACT_MATCH = "exact_match"
    ROUGE_L = "rouge_l"
    CHRF = "chrf"


METRICS_BY_TYPE: dict[str, tuple[str, ...]] = {
    TaskType.CLASSIFICATION: (Metric.ACCURACY, Metric.MACRO_F1),
    TaskType.GENERATION: (Metric.EXACT_MATCH, Metric.ROUGE_L, Metric.CHRF),
}
DEFAULT_METRIC: dict[str, str] = {
    TaskType.CLASSIFICATION: Metric.ACCURACY,
    TaskType.GENERATION: Metric.ROUGE_L,
}


class TaskFiltering(StrEnum):
    BY_TYPE = "byType"
    BY_TAXONOMY = "byTaxonomy"
    NONE = "none"


class Keep(StrEnum):
    LARGEST = "largest"
    CLASSIFICATION = "classification"
    GENERATION = "generation"
    ALL_AS_ADAPTERS = "all-as-adapters"


class TrainingMethod(StrEnum):
    LORA = "lora"
    FULL = "full"


class Runtime(StrEnum):
    JOB = "job"
    JOBSET = "jobset"
    KUBEFLOW = "kubeflow"
    INDEXED_JOB = "indexedJob"


class Engine(StrEnum):
    TGI = "tgi"
    VLLM = "vllm"


class Cutover(StrEnum):
    AUTO = "Auto"
    MANUAL = "Manual"
    OFF = "Off"


class RolloutStrategy(StrEnum):
    IMMEDIATE = "Immediate"
    SHADOW = "Shadow"
    CANARY = "Canary"


class Phase(StrEnum):
    PENDING = "Pending"
    PREPARING = "Preparing"
    TRAINING_STAGE1 = "TrainingStage1"
    TRAINING_STAGE2 = "TrainingStage2"
    EVALUATING = "Evaluating"
    EXPORTING = "Exporting"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"


def accepted(values: Any) -> str:
    """'a, b or c' for an error message."""
    items = [str(getattr(v, "value", v)) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


ECHO_LIMIT = 80  # characters of a user's value repeated in an error message


def shown(value: Any, limit: int = ECHO_LIMIT) -> str:
    """A user's value in an error message: its repr, cut to `limit` characters with a note of
    its length, so that a 50 MB field never becomes a 50 MB message."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes | list | dict | tuple) else len(text)
    unit = "characters" if isinstance(value, str) else "items" if not isinstance(
        value, bytes) else "bytes"
    return f"{text[:limit]}... ({size} {unit})"


def listed(items: Any, limit: int = 20) -> str:
    """'a, b, c' for an error message, at most `limit` items and ECHO_LIMIT characters each."""
    items = list(items)
    text = ", ".join(str(i)[:ECHO_LIMIT] for i in items[:limit])
    return text + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def defaulted(model: type, description: str | None = None) -> Any:
    """A nested object that may be omitted: pydantic builds it from defaults, and the CRD gets
    `default: {}` so that the API server fills the same nested defaults (CEL relies on them)."""
    return Field(default_factory=model, description=description, json_schema_extra={"default": {}})


def cel(*rules: tuple[str, str]) -> dict[str, Any]:
    """json_schema_extra carrying CEL rules as (expression, message) pairs."""
    return {"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}


# A resource.Quantity-shaped string, e.g. 64Gi.
Quantity = Annotated[str, Field(pattern=QUANTITY, examples=["64Gi"])]
