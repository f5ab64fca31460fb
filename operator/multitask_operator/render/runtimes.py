"""The object that runs one step, on the runtime `spec.training.runtime` names.

    from multitask_operator.render import runtimes
    objects = runtimes.render_step(owner, spec, revision, "stage2", config)

Pure: spec in, plain dicts out. prepare, evaluate and export are always a single-pod batch/v1
Job (render/jobs.py). The training stages (stage1, stage2[-GROUP], baseline-TASK) run on:

- `job`: the same single-pod Job (one node);
- `jobset`: a JobSet (jobset.x-k8s.io/v1alpha2) with one replicated Job `node` of `nodes`
  pods; JobSet's own headless Service gives pod 0 a DNS name for the rendezvous;
- `kubeflow`: a Kubeflow Trainer TrainJob (trainer.kubeflow.org/v1alpha1) on the cluster's
  ClusterTrainingRuntime (`MTM_KUBEFLOW_RUNTIME`, default `torch-distributed`);
- `indexedJob`: an Indexed Job of `nodes` pods plus a headless Service named like it, the
  fallback for clusters with neither.

Every node runs `python -m multitask_trainer.launch --nnodes N --nproc-per-node G --node-rank R
--master-addr POD0 --master-port 29500 -m multitask_trainer train ...` (torchrun, passing the
trainer's exit code on, see multitask_trainer/launch.py), R and POD0 coming from the runtime
(the completion index of the pod; Kubeflow's PET_* variables).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..api.common import Runtime
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from . import jobs
from . import pod as pods
from .meta import Owner

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
TRAINJOB_API = "trainer.kubeflow.org/v1alpha1"
# (apiVersion, kind) of the object each runtime creates for a training stage.
KINDS: dict[Runtime, tuple[str, str]] = {
    Runtime.JOB: ("batch/v1", "Job"),
    Runtime.INDEXED_JOB: ("batch/v1", "Job"),
    Runtime.JOBSET: (JOBSET_API, "JobSet"),
    Runtime.KUBEFLOW: (TRAINJOB_API, "TrainJob"),
}
# What a cluster must serve for each runtime that is not built in, for the error message.
REQUIRED_API = {
    Runtime.JOBSET: f"{JOBSET_API} JobSets",
    Runtime.KUBEFLOW: f"{TRAINJOB_API} TrainJobs (Kubeflow Trainer)",
}
OPTIONAL_RUNTIMES = tuple(REQUIRED_API)

REPLICATED_JOB = "node"  # also the trainer container's name in Kubeflow's torch runtimes
KUBEFLOW_CONTAINER = "node"
MASTER_PORT = 29500
NODE_RANK_ENV = "MTM_NODE_RANK"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # annotation and label of pods
# Pod hostnames are OBJECT-node-JOB-POD (JobSet, TrainJob) or OBJECT-POD (Indexed Job) and must
# fit a 63-character DNS label with up to 4 digits of pod index.
MULTI_NODE_NAME = jobs.MAX_NAME - len(f"-{REPLICATED_JOB}-0-") - 4
MANAGER = "multitask.ai/operator"  # our entry in a TrainJob's runtimePatches


def distributed(spec: MultiTaskModelSpec, step: str) -> bool:
    """Whether `step` runs on a multi-node runtime (training stages with a runtime not `job`)."""
    return spec.training.runtime != Runtime.JOB and not jobs.single_pod(step)


def step_kind(spec: MultiTaskModelSpec, step: str) -> tuple[str, str]:
    """(apiVersion, kind) of the object that runs `step`."""
    return KINDS[spec.training.runtime] if distributed(spec, step) else KINDS[Runtime.JOB]


def step_object_name(name: str, spec: MultiTaskModelSpec, step: str, revision: str) -> str:
    limit = MULTI_NODE_NAME if distributed(spec, step) else jobs.MAX_NAME
    return jobs.job_name(name, step, revision, limit)


def torchrun_command(spec: MultiTaskModelSpec, step: str, revision: str, node_rank: str,
                     master_addr: str, master_port: str = str(MASTER_PORT)) -> list[str]:
    """The trainer under torchrun: one process per GPU (one on a CPU node), `nodes` nodes."""
    training = spec.training
    return [
        *jobs.LAUNCHER,
        f"--nnodes={training.nodes}",
        f"--nproc-per-node={max(1, training.resources.gpus)}",
        f"--node-rank={node_rank}",
        f"--master-addr={master_addr}",
        f"--master-port={master_port}",
        "-m", "multitask_trainer", *jobs.training_args(spec, step, revision),
    ]


def _rank_env() -> list[dict[str, Any]]:
    """The pod's completion index (its node rank), set by the Job controller on every pod of
    an Indexed Job, JobSet's included."""
    path = f"metadata.annotations['{COMPLETION_INDEX}']"
    return [{"name": NODE_RANK_ENV, "valueFrom": {"fieldRef": {"fieldPath": path}}}]


def _indexed_job_spec(name: str, spec: MultiTaskModelSpec, revision: str, step: str,
                      config: OperatorConfig, meta: dict[str, Any], master: str,
                      subdomain: str | None, backoff: int) -> dict[str, Any]:
    nodes = spec.training.nodes
    command = torchrun_command(spec, step, revision, f"$({NODE_RANK_ENV})", master)
    container = pods.trainer_container(spec, config, command, name, revision, _rank_env())
    container["ports"] = [{"name": "rendezvous", "containerPort": MASTER_PORT}]
    pod = pods.pod_spec(name, spec, revision, [container])
    if subdomain:
        pod["subdomain"] = subdomain
    return {
        "completionMode": "Indexed",
        "completions": nodes,
        "parallelism": nodes,
        "backoffLimit": backoff,
        "podFailurePolicy": jobs.pod_failure_policy(),
        "template": {
            "metadata": {"labels": {**meta["labels"]},
                         "annotations": {jobs.STEP_ANNOTATION: step}},
            "spec": pod,
        },
    }


def render_jobset(owner: Owner, spec: MultiTaskModelSpec, revision: str,
                  step: str, config: OperatorConfig) -> dict[str, Any]:
    """A JobSet: one Indexed Job of `nodes` pods. Any pod failure fails that Job (backoffLimit
    0) and JobSet restarts all pods together, up to BACKOFF_LIMIT times; the trainer resumes
    from its latest checkpoint. Bad input (exit 2) fails the JobSet at once."""
    name = owner.name
    object_name = step_object_name(name, spec, step, revision)
    meta = jobs.step_meta(owner, object_name, step, revision)
    # enableDNSHostnames: JobSet creates a headless Service named after the JobSet, so pod 0 is
    # OBJECT-node-0-0.OBJECT.
    master = f"{object_name}-{REPLICATED_JOB}-0-0.{object_name}"
    job_spec = _indexed_job_spec(name, spec, revision, step, config, meta, master, None, 0)
    js_spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "failurePolicy": {
            "maxRestarts": jobs.BACKOFF_LIMIT,
            "rules": [{"name": "BadInput", "action": "FailJobSet",
                       "onJobFailureReasons": ["PodFailurePolicy"]}],
        },
        "successPolicy": {"operator": "All"},
        "replicatedJobs": [{
            "name": REPLICATED_JOB,
            "replicas": 1,
            # The child Job carries the model's labels, so that the operator's watch on Jobs
            # wakes the model when it changes (the operator needs no watch on JobSets).
            "template": {"metadata": {"labels": {**meta["labels"]},
                                      "annotations": {jobs.STEP_ANNOTATION: step}},
                         "spec": job_spec},
        }],
    }
    jobs.queue(meta, js_spec, spec)
    return {"apiVersion": JOBSET_API, "kind": "JobSet", "metadata": meta, "spec": js_spec}


def render_indexed_job(owner: Owner, spec: MultiTaskModelSpec,
                       revision: str, step: str,
                       config: OperatorConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """An Indexed Job and the headless Service (named like the Job) that gives pod 0 the DNS
    name OBJECT-0.OBJECT. Without JobSet there is no gang restart: a failed pod is replaced
    alone, its peers fail on the broken collective and are replaced too, so the retry budget
    is BACKOFF_LIMIT restarts of every node."""
    name = owner.name
    object_name = step_object_name(name, spec, step, revision)
    meta = jobs.step_meta(owner, object_name, step, revision)
    backoff = jobs.BACKOFF_LIMIT * spec.training.nodes
    job_spec = _indexed_job_spec(name, spec, revision, step, config, meta,
                                 f"{object_name}-0.{object_name}", object_name, backoff)
    jobs.queue(meta, job_spec, spec)
    service_meta = jobs.step_meta(owner, object_name, step, revision)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": service_meta,
        "spec": {
            "clusterIP": "None",
            # Rendezvous happens before any pod is ready (there is no readiness probe to pass).
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": object_name},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
    return service, job


def render_trainjob(owner: Owner, spec: MultiTaskModelSpec,
                    revision: str, step: str, config: OperatorConfig) -> dict[str, Any]:
    """A Kubeflow Trainer TrainJob on the configured ClusterTrainingRuntime. The torch plugin
    sets PET_NODE_RANK, PET_MASTER_ADDR and PET_MASTER_PORT in the trainer container `node`;
    volumes, labels and placement go in through a runtime patch. Restarts and the failure
    policy are the runtime's."""
    name = owner.name
    object_name = step_object_name(name, spec, step, revision)
    meta = jobs.step_meta(owner, object_name, step, revision)
    training = spec.training
    command = torchrun_command(spec, step, revision, "$(PET_NODE_RANK)", "$(PET_MASTER_ADDR)",
                               "$(PET_MASTER_PORT)")
    container = pods.trainer_container(spec, config, command, name, revision)
    pod = pods.pod_spec(name, spec, revision, [container])
    pod_patch: dict[str, Any] = {
        "volumes": pod["volumes"],
        # The runtime's own pod template decides the token (the patch cannot set it).
        "securityContext": pod["securityContext"],
        "containers": [{"name": KUBEFLOW_CONTAINER, "volumeMounts": container["volumeMounts"],
                        "securityContext": container["securityContext"]}],
    }
    for key in ("nodeSelector", "tolerations"):
        if key in pod:
            pod_patch[key] = pod[key]
    labels = {**meta["labels"]}
    tj_spec: dict[str, Any] = {
        "runtimeRef": {"name": config.kubeflow_runtime, "apiGroup": "trainer.kubeflow.org",
                       "kind": "ClusterTrainingRuntime"},
        "trainer": {
            "image": config.trainer_image,
            "command": command,
            "env": container["env"],
            "numNodes": training.nodes,
            "numProcPerNode": max(1, training.resources.gpus),
            "resourcesPerNode": container["resources"],
        },
        "runtimePatches": [{
            "manager": MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [{
                "name": REPLICATED_JOB,
                "template": {
                    # The child Jobs carry the model's labels (see render_jobset).
                    "metadata": {"labels": labels},
                    "spec": {"template": {"metadata": {"labels": labels},
                                          "spec": pod_patch}},
                },
            }]}}},
        }],
    }
    jobs.queue(meta, tj_spec, spec)
    return {"apiVersion": TRAINJOB_API, "kind": "TrainJob", "metadata": meta, "spec": tj_spec}


def render_step(owner: Owner, spec: MultiTaskModelSpec, revision: str,
                step: str, config: OperatorConfig,
                keep: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every object to create for `step`, in order (a Service before the Job that needs it);
    `keep`: the revisions whose workspace folders prepare leaves (reconcile/cleanup.py)."""
    if not distributed(spec, step):
        return [jobs.render_job(owner, spec, revision, step, config, keep)]
    runtime = spec.training.runtime
    if runtime == Runtime.JOBSET:
        return [render_jobset(owner, spec, revision, step, config)]
    if runtime == Runtime.KUBEFLOW:
        return [render_trainjob(owner, spec, revision, step, config)]
    return list(render_indexed_job(owner, spec, revision, step, config))
