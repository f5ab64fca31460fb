"""The MultiTaskModel API (multitask.ai/v1alpha1): pydantic models, the source of the CRD."""

from .common import Phase, TaskType
from .resource import API_VERSION, GROUP, KIND, PLURAL, VERSION, MultiTaskModel, ObjectMeta
from .spec import MultiTaskModelSpec, Task
from .status import MultiTaskModelStatus, Plan, StagePlan, TaskPlan

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "MultiTaskModel",
    "MultiTaskModelSpec",
    "MultiTaskModelStatus",
    "ObjectMeta",
    "Phase",
    "Plan",
    "StagePlan",
    "Task",
    "TaskPlan",
    "TaskType",
]
