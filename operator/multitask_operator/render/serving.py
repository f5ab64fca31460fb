"""The inference Deployment and Service: TGI (default) or vLLM serving the exported model.

    from multitask_operator.render import serving
    objs = [serving.render_inference_deployment(...), serving.render_inference_service(...)]

Pure: spec in, plain dicts out. The model is `revisions/<rev>/export/`: a merged model, or
`base/` plus `adapters/<group>/` when recipe.keep is all-as-adapters (one LoRA adapter per task
group, picked per request by the gateway). It is read from the workspace PVC mounted read-only
at /workspace, or, with spec.serving.modelStorage, from a node-local emptyDir at /mnt/models that
an init container (`mtm fetch-model`, the storage initializer) fills from where the publish step
copied the export: then no inference pod mounts the training workspace.
"""

from __future__ import annotations

from typing import Any

from ..api.common import Engine
from ..api.serving import Placement
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from . import naming
from .meta import (
    REVISION_ANNOTATION,
    Owner,
    cluster_ip_service,
    http_probe,
    rolling_deployment,
    scrape_annotations,
)
from .pod import RESTRICTED_CONTAINER, restricted_pod
from .scaling import topology_spread
from .tasks import RoutedTask, adapter_groups

COMPONENT = "inference"
MODELS_MOUNT = "/mnt/models"
PVC_ROOT = "/mnt/pvc"
PORT = 8080  # above 1024, so that the engine can bind it without root
WORKSPACE_MOUNT = "/workspace"
SHM_SIZE = "1Gi"  # NCCL and the engines' shared-memory queues; Docker's 64Mi default is too small
# vLLM only accepts these LoRA ranks for --max-lora-rank; the trained r is rounded up to one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
ENGINE_UID = 1000


def token_limits(spec: MultiTaskModelSpec) -> tuple[int, int]:
    """(max input tokens, max total tokens), with the defaults documented on the spec fields."""
    max_input = spec.serving.max_input_tokens or spec.training.max_seq_length
    max_total = spec.serving.max_total_tokens or max_input + 512
    if max_total <= max_input:
        raise ValueError(
            f"spec.serving.maxTotalTokens ({max_total}) must be greater than maxInputTokens "
            f"({max_input}): the difference is what the model may generate"
        )
    return max_input, max_total


def model_paths(revision: str, groups: list[str],
                fetched: bool = False) -> tuple[str, dict[str, str]]:
    """Path of the model the engine loads and of each adapter, inside the container (`fetched`:
    from the storage initializer's emptyDir)."""
    export = f"{MODELS_MOUNT}/model" if fetched else (
        f"{WORKSPACE_MOUNT}/{naming.export_dir(revision)}")
    if not groups:
        return export, {}
    return f"{export}/base", {g: f"{export}/adapters/{g}" for g in groups}


def _tgi_container(
    spec: MultiTaskModelSpec, model: str, adapters: dict[str, str], image: str
) -> dict[str, Any]:
    max_input, max_total = token_limits(spec)
    args = [
        "--model-id", model,
        "--hostname", "0.0.0.0",
        "--port", str(PORT),
        "--max-input-tokens", str(max_input),
        "--max-total-tokens", str(max_total),
    ]
    if spec.serving.resources.gpus > 1:
        args += ["--num-shard", str(spec.serving.resources.gpus)]
    env = [
        {"name": "HF_HUB_OFFLINE", "value": "1"},  # the model is on the volume; never download
        {"name": "HF_HOME", "value": "/data"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if adapters:
        # TGI's `name=path` form: requests pick an adapter with parameters.adapter_id = name.
        value = ",".join(f"{group}={path}" for group, path in sorted(adapters.items()))
        env.append({"name": "LORA_ADAPTERS", "value": value})
    return {"name": "tgi", "image": image, "args": args, "env": env}


def _vllm_container(
    name: str, spec: MultiTaskModelSpec, model: str, adapters: dict[str, str], image: str
) -> dict[str, Any]:
    _, max_total = token_limits(spec)
    command = [
        "vllm", "serve", model,
        # The gateway addresses the merged model by the MultiTaskModel's name.
        "--served-model-name", name,
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--max-model-len", str(max_total),
        "--tensor-parallel-size", str(max(1, spec.serving.resources.gpus)),
    ]
    if adapters:
        rank = next((r for r in VLLM_LORA_RANKS if r >= spec.training.lora.r), None)
        if rank is None:
            raise ValueError(
                f"spec.training.lora.r is {spec.training.lora.r}; vLLM serves LoRA ranks up to "
                f"{VLLM_LORA_RANKS[-1]}"
            )
        command += ["--enable-lora", "--max-lora-rank", str(rank)]
        command += ["--max-loras", str(len(adapters))]
        command += ["--lora-modules", *(f"{g}={p}" for g, p in sorted(adapters.items()))]
    env = [
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "HF_HOME", "value": "/data"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    return {"name": "vllm", "image": image, "command": command, "env": env}


def _resources(spec: MultiTaskModelSpec) -> dict[str, Any]:
    amounts: dict[str, str] = {}
    if spec.serving.resources.gpus:
        amounts["nvidia.com/gpu"] = str(spec.serving.resources.gpus)
    if spec.serving.resources.memory:
        amounts["memory"] = spec.serving.resources.memory
    return {"requests": dict(amounts), "limits": dict(amounts)} if amounts else {}


def render_inference_deployment(
    owner: Owner,
    spec: MultiTaskModelSpec,
    revision: str,
    tasks: list[RoutedTask],
    config: OperatorConfig,
) -> dict[str, Any]:
    """The Deployment running TGI or vLLM on the export of `revision`."""
    name = owner.name
    groups = adapter_groups(spec, tasks)
    storage = spec.serving.model_storage
    model, adapters = model_paths(revision, groups, fetched=storage is not None)
    if spec.serving.engine == Engine.VLLM:
        image = spec.serving.image or config.vllm_image
        container = _vllm_container(name, spec, model, adapters, image)
    else:
        container = _tgi_container(spec, model, adapters, spec.serving.image or config.tgi_image)
    container.update(
        imagePullPolicy=config.image_pull_policy,
        ports=[{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Loading weights onto the GPU can take many minutes for large models: the startup probe
        # allows 30 (180 x 10 s) before liveness starts counting.
        startupProbe=http_probe("/health", period=10, failures=180),
        readinessProbe=http_probe("/health", period=10, failures=3),
        livenessProbe=http_probe("/health", period=30, failures=3, timeout=10),
        resources=_resources(spec),
        volumeMounts=[
            {"name": "model", "mountPath": MODELS_MOUNT, "readOnly": True} if storage else
            {"name": "workspace", "mountPath": WORKSPACE_MOUNT, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        securityContext=RESTRICTED_CONTAINER,
    )
    pod_spec: dict[str, Any] = {
        # Both images run as root by default but work as any user once HOME, HF_HOME and /tmp
        # are writable, which the emptyDirs below provide.
        "securityContext": restricted_pod(ENGINE_UID),
        **placement(spec.serving.placement, config.inference_placement),
        "topologySpreadConstraints": topology_spread(name, COMPONENT),
        # The engines never call the Kubernetes API: no token in their pods.
        "automountServiceAccountToken": False,
        "containers": [container],
        "terminationGracePeriodSeconds": 60,  # lets in-flight generations finish
        "volumes": [
            {"name": "model", "emptyDir": {"sizeLimit": storage.cache_size}} if storage else {
                "name": "workspace",
                "persistentVolumeClaim": {
                    "claimName": naming.workspace_claim(name, spec),
                    "readOnly": True,
                },
            },
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}},
            {"name": "data", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if storage is not None:
        _storage_initializer(spec, revision, pod_spec, config)
    # Both engines serve Prometheus metrics on their HTTP port; the queue gauge among them is
    # what the HPA of serving.autoscaling scales on, and that HPA owns the count when it is set.
    pod_annotations = {REVISION_ANNOTATION: revision, **scrape_annotations(PORT)}
    replicas = spec.serving.replicas if spec.serving.autoscaling is None else None
    return rolling_deployment(naming.inference_name(name), owner, COMPONENT,
                              revision, pod_annotations, pod_spec, replicas)


def _storage_initializer(spec: MultiTaskModelSpec, revision: str, pod_spec: dict[str, Any],
                         config: OperatorConfig) -> None:
    """The init container that copies the published model of `revision` into the pod's
    emptyDir (spec.serving.modelStorage), in the operator's image (small, no CUDA)."""
    storage = spec.serving.model_storage
    assert storage is not None
    mounts: list[dict[str, Any]] = [{"name": "model", "mountPath": MODELS_MOUNT},
                                    {"name": "tmp", "mountPath": "/tmp"}]
    if storage.uri.startswith("pvc://"):
        claim = storage.uri[len("pvc://"):].split("/", 1)[0]
        mounts.append({"name": "model-storage", "mountPath": f"{PVC_ROOT}/{claim}",
                       "readOnly": True})
        pod_spec["volumes"].append({"name": "model-storage", "persistentVolumeClaim": {
            "claimName": claim, "readOnly": True}})
    container: dict[str, Any] = {
        "name": "storage-initializer",
        "image": config.gateway_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["mtm", "fetch-model", "--from", f"{storage.uri.rstrip('/')}/{revision}",
                    "--to", f"{MODELS_MOUNT}/model"],
        "env": [{"name": "MTM_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": "/tmp"}],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"memory": "2Gi"}},
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER,
    }
    if storage.secret:
        container["envFrom"] = [{"secretRef": {"name": storage.secret}}]
    pod_spec["initContainers"] = [container]


def placement(own: Placement, default: dict[str, Any]) -> dict[str, Any]:
    """The PodSpec fields of a serving component's placement: the spec's fields over the
    operator config's defaults. Raises ValueError (a ValidationError) for a bad default."""
    return own.merged_over(Placement.model_validate(default)).pod_fields()


def render_inference_service(owner: Owner) -> dict[str, Any]:
    """ClusterIP Service in front of the inference pods; the gateway is its only client."""
    name = owner.name
    return cluster_ip_service(naming.inference_name(name), owner, COMPONENT)


def inference_url(name: str, namespace: str) -> str:
    """In-cluster URL of the inference Service (what the gateway calls)."""
    return f"http://{naming.inference_name(name)}.{namespace}.svc:80"
