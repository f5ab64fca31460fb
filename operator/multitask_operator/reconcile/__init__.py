"""The reconcile core: observed state of one MultiTaskModel in, actions out. Pure.

    from multitask_operator.reconcile import reconcile, finalize, Observed
    outcome = reconcile(observed, OperatorConfig.from_env())

No kopf, kubernetes or aiohttp import here (see .importlinter): the k8s layer gathers the
`Observed` and carries out the `Outcome`; the kopf handlers only glue the two together.
"""

from ..api.resource import APPROVE_ANNOTATION
from .actions import Absent, Apply, Create, Delete, Event, Outcome, Patch
from .core import RETRY_ANNOTATION, finalize, reconcile
from .observed import Observed
from .revision import training_revision

__all__ = [
    "APPROVE_ANNOTATION",
    "RETRY_ANNOTATION",
    "Absent",
    "Apply",
    "Create",
    "Delete",
    "Event",
    "Observed",
    "Outcome",
    "Patch",
    "finalize",
    "reconcile",
    "training_revision",
]
