"""Training-side objects: the trainer Job of each step, the workspace PVC and the spec ConfigMap.

    from multitask_operator.render import jobs
    job = jobs.render_job(owner, spec, revision, "stage2", config)

Pure: spec in, plain dicts out. Every step of a revision runs the trainer image with
`python -m multitask_trainer STEP --workspace /workspace/revisions/<rev>`; prepare also gets
`--spec` pointing at the ConfigMap NAME-spec-<rev>, which holds the spec as a MultiTaskModel YAML
document (the trainer stores it in the workspace for the later steps).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import yaml

from ..api.resource import API_VERSION, KIND
from ..api.serving import PUBLISH_PREFIX
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from . import naming
from .meta import REVISION_ANNOTATION, Owner, object_meta
from .pod import (
    CONTAINER,
    PVC_ROOT,
    SPEC_KEY,
    SPEC_MOUNT,
    WORKSPACE_MOUNT,
    pod_spec,
    spec_configmap_name,
    step_gpus,
    trainer_container,
)

COMPONENT = "trainer"
STEP_LABEL = "multitask.ai/step"
REVISION_LABEL = "multitask.ai/revision"
STEP_ANNOTATION = "multitask.ai/step"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Pod retries per step. A crash or an evicted node is worth retrying (training resumes from its
# latest checkpoint); bad input is not: the trainer exits 2 and the pod failure policy below
# fails the Job at once instead of burning the retries.
BACKOFF_LIMIT = 2
BAD_INPUT_EXIT_CODE = 2
MAX_NAME = 63  # Job names become the batch.kubernetes.io/job-name label value
# torchrun that exits with the trainer's exit code (multitask_trainer/launch.py), so that the
# podFailurePolicy below still sees bad input (exit 2) from a step run by several processes.
LAUNCHER = ("python", "-m", "multitask_trainer.launch")
SINGLE_POD_STEPS = ("prepare", "evaluate", "export")  # never multi-node: no training in them


def job_name(name: str, step: str, revision: str, limit: int = MAX_NAME) -> str:
    """`NAME-STEP-REV`; a step too long to fit (e.g. baseline-<40-char task>) is cut and given a
    short hash of its full name, so that two steps never share a Job name. Multi-node objects
    pass a smaller `limit` (their pods' hostnames append indexes); when even the model name does
    not fit it is cut too, and a hash of NAME/STEP/REV keeps the name distinct."""
    full = f"{name}-{step}-{revision}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(step.encode()).hexdigest()[:5]
    room = limit - len(name) - len(revision) - len(digest) - 3
    if room > 0:
        return f"{name}-{step[:room].rstrip('-')}-{digest}-{revision}"
    digest = hashlib.sha256(f"{name}/{step}/{revision}".encode()).hexdigest()[:10]
    return f"{name[:limit - len(digest) - 1].rstrip('-')}-{digest}"


def single_pod(step: str) -> bool:
    """Steps that never run multi-node: no training in them."""
    return step in SINGLE_POD_STEPS or step.startswith(PUBLISH_PREFIX)


def trainer_args(step: str, revision: str) -> list[str]:
    """The trainer's command line for `step`: prepare, evaluate, export or a plan stage name."""
    workspace = f"{WORKSPACE_MOUNT}/{naming.revision_dir(revision)}"
    if step == "prepare":
        return ["prepare", "--workspace", workspace, "--spec", f"{SPEC_MOUNT}/{SPEC_KEY}"]
    if step in ("evaluate", "export"):
        return [step, "--workspace", workspace]
    return ["train", "--workspace", workspace, "--stage", step]


def training_args(spec: MultiTaskModelSpec, step: str, revision: str,
                  keep: Sequence[str] = ()) -> list[str]:
    """`trainer_args` plus what the spec adds: --cpu without GPUs, --fsdp for sharded training;
    prepare gets the revisions whose workspace folders stay (`keep`, reconcile/cleanup.py)."""
    storage = spec.serving.model_storage
    if step.startswith(PUBLISH_PREFIX) and storage is not None:
        return ["publish", "--workspace", f"{WORKSPACE_MOUNT}/{naming.revision_dir(revision)}",
                "--to", f"{storage.uri.rstrip('/')}/{revision}"]
    args = trainer_args(step, revision)
    flags = []
    if step == "prepare" and keep:
        flags += ["--keep-revisions", ",".join(keep)]
    if not step_gpus(spec, step):
        flags.append("--cpu")
    if spec.training.fsdp and not single_pod(step):
        flags.append("--fsdp")
    # Flags go before prepare's --spec FILE, which stays the last pair of its command line.
    at = args.index("--spec") if "--spec" in args else len(args)
    return args[:at] + flags + args[at:]


def pod_failure_policy() -> dict[str, Any]:
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [BAD_INPUT_EXIT_CODE],
                },
            },
            # Preemption and node drains are not the trainer's fault.
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def step_meta(owner: Owner, object_name: str, step: str,
              revision: str) -> dict[str, Any]:
    """Metadata of the object that runs `step`: owner, labels, step and revision annotations."""
    meta = object_meta(object_name, owner, COMPONENT,
                       annotations={STEP_ANNOTATION: step, REVISION_ANNOTATION: revision})
    meta["labels"].update({STEP_LABEL: step_label(step), REVISION_LABEL: revision})
    return meta


def render_job(
    owner: Owner,
    spec: MultiTaskModelSpec,
    revision: str,
    step: str,
    config: OperatorConfig,
    keep: Sequence[str] = (),
) -> dict[str, Any]:
    """The single-pod Job running one step of `revision` (render/runtimes.py renders the
    multi-node objects of the training stages). A training stage on several GPUs runs one
    process per GPU under the launcher (a local rendezvous: `--standalone`)."""
    name = owner.name
    gpus = spec.training.resources.gpus
    command = ["python", "-m", "multitask_trainer", *training_args(spec, step, revision, keep)]
    if gpus > 1 and not single_pod(step):
        command[:3] = [*LAUNCHER, "--standalone", f"--nproc-per-node={gpus}",
                       "-m", "multitask_trainer"]
    container = trainer_container(spec, config, command, name, revision, step=step)
    pod = pod_spec(name, spec, revision, [container])
    if step.startswith(PUBLISH_PREFIX):
        publish_access(spec, container, pod)
    meta = step_meta(owner, job_name(name, step, revision), step, revision)
    job_spec: dict[str, Any] = {
        "backoffLimit": BACKOFF_LIMIT,
        "podFailurePolicy": pod_failure_policy(),
        "template": {
            "metadata": {"labels": {**meta["labels"]}, "annotations": {STEP_ANNOTATION: step}},
            "spec": pod,
        },
    }
    queue(meta, job_spec, spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}


def publish_access(spec: MultiTaskModelSpec, container: dict[str, Any],
                   pod: dict[str, Any]) -> None:
    """What the publish step needs to write the model storage: its Secret, and its claim
    mounted read-write (replacing a read-only mount of the same claim for data)."""
    storage = spec.serving.model_storage
    assert storage is not None
    if storage.secret:
        container["envFrom"] = [{"secretRef": {"name": storage.secret}}]
    if storage.uri.startswith("pvc://"):
        claim = storage.uri[len("pvc://"):].split("/", 1)[0]
        path = f"{PVC_ROOT}/{claim}"
        stale = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == path}
        container["volumeMounts"] = [m for m in container["volumeMounts"]
                                     if m["name"] not in stale]
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] not in stale]
        container["volumeMounts"].append({"name": "model-storage", "mountPath": path})
        pod["volumes"].append({"name": "model-storage",
                               "persistentVolumeClaim": {"claimName": claim}})


def queue(meta: dict[str, Any], object_spec: dict[str, Any], spec: MultiTaskModelSpec) -> None:
    """Kueue: the queue label on the object, created suspended (Kueue admits by unsuspending;
    created running, it would start before admission)."""
    if spec.training.queue_name:
        meta["labels"][QUEUE_LABEL] = spec.training.queue_name
        object_spec["suspend"] = True


def step_label(step: str) -> str:
    """`step` as a label value (at most 63 characters, which every step name already fits)."""
    return step[:63].rstrip("-._")


def render_workspace_pvc(
    owner: Owner, spec: MultiTaskModelSpec, config: OperatorConfig
) -> dict[str, Any]:
    """The workspace PVC the operator creates (and owns) when the spec names no claim."""
    name = owner.name
    workspace = spec.training.workspace
    pvc_spec: dict[str, Any] = {
        "accessModes": [config.workspace_access_mode],
        "resources": {"requests": {"storage": workspace.size}},
    }
    storage_class = workspace.storage_class_name or config.workspace_storage_class
    if storage_class:
        pvc_spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(naming.workspace_name(name), owner, "workspace"),
        "spec": pvc_spec,
    }


def render_spec_configmap(
    owner: Owner, spec: MultiTaskModelSpec, revision: str
) -> dict[str, Any]:
    """The spec of `revision` as the MultiTaskModel YAML document that prepare's --spec reads."""
    name = owner.name
    document = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec.to_wire(),
    }
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    meta = object_meta(spec_configmap_name(name, revision), owner, COMPONENT,
                       annotations={REVISION_ANNOTATION: revision})
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta,
        # Immutable: a revision's spec never changes (a changed spec is a new revision), and the
        # kubelet stops watching immutable ConfigMaps.
        "immutable": True,
        "data": {SPEC_KEY: text},
    }
