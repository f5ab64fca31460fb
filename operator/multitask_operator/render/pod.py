"""The trainer's pods: its container (command, env, resources, mounts), the pod around it, and
the security contexts every pod the operator renders shares (the restricted Pod Security
Standard). Used by jobs.py (one pod per step) and runtimes.py (JobSet, TrainJob, Indexed Job);
serving.py and gateway.py take the security contexts.

Pure: spec in, plain dicts out.
"""

from __future__ import annotations

from typing import Any

from ..api.serving import PUBLISH_PREFIX
from ..api.spec import MultiTaskModelSpec
from ..api.training import STEP_GPU_DEFAULTS
from ..config import OperatorConfig
from . import naming

CONTAINER = "trainer"
WORKSPACE_MOUNT = "/workspace"
SPEC_MOUNT = "/etc/mtm-spec"
SPEC_KEY = "model.yaml"
PVC_ROOT = "/mnt/pvc"  # the trainer reads pvc://CLAIM/PATH at $MTM_PVC_ROOT/CLAIM/PATH
SHM_SIZE = "8Gi"  # DataLoader workers and NCCL exchange tensors through /dev/shm


def restricted_pod(uid: int, fs_group: bool = True) -> dict[str, Any]:
    """The pod securityContext of the restricted Pod Security Standard, as `uid`; fsGroup makes
    a fresh volume writable by it."""
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}
    if fs_group:
        context["fsGroup"] = uid
    context["seccompProfile"] = {"type": "RuntimeDefault"}
    return context


# A container's securityContext under the restricted standard.
RESTRICTED_CONTAINER: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def spec_configmap_name(name: str, revision: str) -> str:
    return f"{name}-spec-{revision}"


def data_claims(spec: MultiTaskModelSpec) -> list[str]:
    """Claims named by pvc:// data locations; each is mounted read-only under /mnt/pvc."""
    claims = set()
    for task in spec.tasks:
        for value in (task.data.train, task.data.eval):
            if value and value.startswith("pvc://"):
                claims.add(value[len("pvc://"):].split("/", 1)[0])
    return sorted(claims)


def _resource_step(step: str | None) -> str:
    """The stepResources entry of a step: the publish step copies the export, and runs as it."""
    return "export" if (step or "").startswith(PUBLISH_PREFIX) else (step or "")


def step_gpus(spec: MultiTaskModelSpec, step: str | None) -> int:
    """GPUs of a step's pod: training.resources' for a training stage, stepResources (with
    no GPU by default for prepare and export) for the others."""
    step = _resource_step(step)
    own = getattr(spec.training.step_resources, step or "", None)
    if own is not None and own.gpus is not None:
        return int(own.gpus)
    return STEP_GPU_DEFAULTS.get(step or "", spec.training.resources.gpus)


def _resources(spec: MultiTaskModelSpec, step: str | None = None) -> dict[str, Any]:
    wanted = spec.training.resources
    own = getattr(spec.training.step_resources, _resource_step(step), None)
    memory = (own.memory if own is not None else None) or wanted.memory
    cpu = (own.cpu if own is not None else None) or wanted.cpu
    gpus = step_gpus(spec, step)
    amounts: dict[str, str] = {"memory": memory}
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    requests = dict(amounts)
    if cpu:
        requests["cpu"] = cpu
    # Memory and GPUs are limits too (a GPU must be); CPU is not, so that data loading may burst.
    return {"requests": requests, "limits": amounts}


def _env(spec: MultiTaskModelSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # Progress lines must reach the log as they happen, not when a buffer fills.
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "MTM_PVC_ROOT", "value": PVC_ROOT},
        # One download cache per workspace: every step and revision reuses the base model.
        {"name": "HF_HOME", "value": f"{WORKSPACE_MOUNT}/.cache/huggingface"},
    ]
    secret = spec.base_model.hf_token_secret
    if secret:
        env.append({
            "name": "HF_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
        })
    return env


def _volumes(name: str, spec: MultiTaskModelSpec,
             revision: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE_MOUNT},
        {"name": "spec", "mountPath": SPEC_MOUNT, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "workspace",
            "persistentVolumeClaim": {"claimName": naming.workspace_claim(name, spec)},
        },
        {"name": "spec", "configMap": {"name": spec_configmap_name(name, revision)}},
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
    ]
    data_mounts, data_volumes = data_claim_volumes(spec)
    return mounts + data_mounts, volumes + data_volumes


def data_claim_volumes(spec: MultiTaskModelSpec) -> tuple[list[dict[str, Any]],
                                                          list[dict[str, Any]]]:
    """(mounts, volumes) of the pvc:// data claims, each read-only under /mnt/pvc."""
    mounts, volumes = [], []
    for i, claim in enumerate(data_claims(spec)):
        mounts.append({"name": f"data-{i}", "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": True})
        volumes.append(
            {"name": f"data-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    return mounts, volumes


# The trainer image runs as uid 1000 (trainer-image/Dockerfile).
TRAINER_UID = 1000


def trainer_container(spec: MultiTaskModelSpec, config: OperatorConfig, command: list[str],
                      name: str, revision: str,
                      extra_env: list[dict[str, Any]] | None = None,
                      step: str | None = None) -> dict[str, Any]:
    """The trainer container running `command`, with the spec's resources, env and mounts."""
    mounts, _ = _volumes(name, spec, revision)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": config.trainer_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": command,
        "env": _env(spec) + list(extra_env or []),
        "resources": _resources(spec, step),
        "volumeMounts": mounts,
        # The trainer writes its JSON summary there; if it dies before it can (OOM, a segfault),
        # the end of its log is the best message the operator can show instead.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER,
    }
    if step == "prepare" and spec.training.data_secret:
        # Only the step that reads the data gets its credentials.
        container["envFrom"] = [{"secretRef": {"name": spec.training.data_secret}}]
    return container


def pod_spec(name: str, spec: MultiTaskModelSpec, revision: str,
             containers: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec every trainer pod shares: volumes, placement, no API token, no restarts."""
    training = spec.training
    _, volumes = _volumes(name, spec, revision)
    out: dict[str, Any] = {
        "restartPolicy": "Never",  # the Job retries with a new pod; needed by podFailurePolicy
        "containers": containers,
        "volumes": volumes,
        # The trainer never calls the API server: progress goes to its log, results to the
        # termination message, so its pods get no token at all.
        "automountServiceAccountToken": False,
        "securityContext": restricted_pod(TRAINER_UID),
    }
    if training.resources.node_selector:
        out["nodeSelector"] = dict(training.resources.node_selector)
    if training.resources.tolerations:
        out["tolerations"] = [t.to_wire() for t in training.resources.tolerations]
    return out
