"""The Job of a data check (reconcile/datacheck.py): `python -m multitask_trainer fingerprint`
on the spec of the current revision. It mounts no workspace, only the spec, the pvc:// data
claims (read-only) and the data Secret, and asks for a little CPU: it never waits for a GPU or
for the training pod's volume.
"""

from __future__ import annotations

from typing import Any

from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from .jobs import STEP_ANNOTATION
from .meta import Owner, object_meta
from .pod import (
    CONTAINER,
    PVC_ROOT,
    RESTRICTED_CONTAINER,
    SPEC_KEY,
    SPEC_MOUNT,
    TRAINER_UID,
    data_claim_volumes,
    restricted_pod,
    spec_configmap_name,
)

COMPONENT = "datacheck"
STEP = "fingerprint"


def render_data_check(owner: Owner, spec: MultiTaskModelSpec, revision: str, job_name: str,
                      config: OperatorConfig) -> dict[str, Any]:
    mounts: list[dict[str, Any]] = [{"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
                                    {"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict[str, Any]] = [
        {"name": "spec", "configMap": {"name": spec_configmap_name(owner.name, revision)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},  # the Hub client's cache
    ]
    data_mounts, data_volumes = data_claim_volumes(spec)
    mounts += data_mounts
    volumes += data_volumes
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.trainer_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["python", "-m", "multitask_trainer", STEP, "--spec",
                    f"{SPEC_MOUNT}/{SPEC_KEY}"],
        "env": [{"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "MTM_PVC_ROOT", "value": PVC_ROOT},
                {"name": "HF_HOME", "value": "/tmp/hf"}],
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                      "limits": {"memory": "1Gi"}},
        "volumeMounts": mounts,
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER,
    }
    if spec.training.data_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.training.data_secret}}]
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(TRAINER_UID),
    }
    if spec.training.resources.node_selector:
        pod["nodeSelector"] = dict(spec.training.resources.node_selector)
    if spec.training.resources.tolerations:
        pod["tolerations"] = [t.to_wire() for t in spec.training.resources.tolerations]
    meta = object_meta(job_name, owner, COMPONENT, annotations={STEP_ANNOTATION: STEP})
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 900,
                 "template": {"metadata": {"labels": dict(meta["labels"]),
                                           "annotations": {STEP_ANNOTATION: STEP}},
                              "spec": pod}},
    }
