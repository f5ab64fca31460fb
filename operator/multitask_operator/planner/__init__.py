"""The recipe planner (pure): task filtering, the high-resource set, stage mixtures and steps."""

from .filtering import Grouping, group_tasks, taxonomy
from .mixture import MixtureError, capped_size, instance_balanced, temperature_scaled
from .plan import PlanError, build_plan, eval_split_size, stage_steps

__all__ = [
    "Grouping",
    "MixtureError",
    "PlanError",
    "build_plan",
    "capped_size",
    "eval_split_size",
    "group_tasks",
    "instance_balanced",
    "stage_steps",
    "taxonomy",
    "temperature_scaled",
]
