"""Operator configuration: defaults for what the operator launches, read from the environment.

The Helm chart sets these variables on the operator Deployment (values.yaml documents each);
`mtm operator` reads them once at start-up. A spec field, where one exists (e.g.
`spec.serving.image`), wins over the default here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# Pinned tags, never `latest`: a rollout must be reproducible.
DEFAULT_TRAINER_IMAGE = "ghcr.io/multitask-operator/trainer:0.1.0"
DEFAULT_GATEWAY_IMAGE = "ghcr.io/multitask-operator/operator:0.1.0"
DEFAULT_TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.6"
DEFAULT_VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"


def _env_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


@dataclass(frozen=True)
class OperatorConfig:
    trainer_image: str = DEFAULT_TRAINER_IMAGE
    gateway_image: str = DEFAULT_GATEWAY_IMAGE
    tgi_image: str = DEFAULT_TGI_IMAGE
    vllm_image: str = DEFAULT_VLLM_IMAGE
    image_pull_policy: str = "IfNotPresent"
    # Workspace PVC the operator creates when spec.training.workspace.claimName is not set.
    workspace_storage_class: str | None = None
    workspace_access_mode: str = "ReadWriteOnce"
    # Namespaces to watch; empty means the whole cluster.
    watch_namespaces: list[str] = field(default_factory=list)
    # The ClusterTrainingRuntime that spec.training.runtime kubeflow TrainJobs reference.
    kubeflow_runtime: str = "torch-distributed"
    # Whether a Service must opt in (annotation multitask.ai/takeover-by naming the model) before
    # a MultiTaskModel may take it over. Off, any author of a MultiTaskModel may repoint any
    # Service of their namespace.
    service_opt_in: bool = True
    # Image prefixes a MultiTaskModel may name in spec.serving.image; empty allows any. The
    # operator's own default images are always allowed.
    allowed_images: list[str] = field(default_factory=list)
    # A NetworkPolicy per model lets only its gateway (and the monitoring namespace, for the
    # engines' metrics) reach its inference pods; off for clusters without a policy engine.
    network_policy: bool = True
    metrics_namespace: str = "monitoring"
    # How long deletion keeps retrying a Service restore that fails (403, a webhook) before it
    # releases the finalizer anyway, with a Warning Event listing what was left where.
    finalizer_timeout_seconds: float = 600.0
    # Default placement of inference and gateway pods (nodeSelector, tolerations, affinity,
    # priorityClassName), as JSON; a MultiTaskModel's serving.placement fields win.
    inference_placement: dict[str, Any] = field(default_factory=dict)
    gateway_placement: dict[str, Any] = field(default_factory=dict)
    # Where the operator reads a gateway pod's metrics during a handover (serving.rollout),
    # `{ip}` standing for the pod's IP.
    gateway_metrics_url: str = "http://{ip}:8080/metrics"

    ENV = {
        "trainer_image": "MTM_TRAINER_IMAGE",
        "gateway_image": "MTM_GATEWAY_IMAGE",
        "tgi_image": "MTM_TGI_IMAGE",
        "vllm_image": "MTM_VLLM_IMAGE",
        "image_pull_policy": "MTM_IMAGE_PULL_POLICY",
        "workspace_storage_class": "MTM_WORKSPACE_STORAGE_CLASS",
        "workspace_access_mode": "MTM_WORKSPACE_ACCESS_MODE",
        "watch_namespaces": "MTM_WATCH_NAMESPACES",
        "kubeflow_runtime": "MTM_KUBEFLOW_RUNTIME",
        "service_opt_in": "MTM_SERVICE_OPT_IN",
        "allowed_images": "MTM_ALLOWED_IMAGES",
        "network_policy": "MTM_NETWORK_POLICY",
        "metrics_namespace": "MTM_METRICS_NAMESPACE",
        "finalizer_timeout_seconds": "MTM_FINALIZER_TIMEOUT_SECONDS",
        "inference_placement": "MTM_INFERENCE_PLACEMENT",
        "gateway_placement": "MTM_GATEWAY_PLACEMENT",
        "gateway_metrics_url": "MTM_GATEWAY_METRICS_URL",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        source: Mapping[str, str] = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(cls.ENV[f.name])
            if raw is None or raw == "":
                continue
            if f.name in ("watch_namespaces", "allowed_images"):
                values[f.name] = _env_list(raw)
            elif f.type in ("bool", bool):
                values[f.name] = _env_bool(cls.ENV[f.name], raw)
            elif f.name.endswith("_placement"):
                values[f.name] = _env_object(cls.ENV[f.name], raw)
            elif f.type in ("float", float):
                values[f.name] = _env_seconds(cls.ENV[f.name], raw)
            else:
                values[f.name] = raw
        return cls(**values)


def _env_object(name: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not a JSON object; accepted: e.g. "
                         '{"nodeSelector": {"pool": "gpu"}, "priorityClassName": "serving"}')
    return value


def _env_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}={raw!r} is not a number of seconds; accepted: a number > 0")
    return value


def _env_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; accepted: true or false")


def image_refusal(image: str | None, config: OperatorConfig) -> str | None:
    """Why the operator will not run `image` (spec.serving.image), or None."""
    if image is None or not config.allowed_images:
        return None
    defaults = (config.tgi_image, config.vllm_image, config.trainer_image, config.gateway_image)
    if image in defaults or any(image.startswith(p) for p in config.allowed_images):
        return None
    return (f"spec.serving.image {image} is not allowed by the operator's allowedImages "
            f"({', '.join(config.allowed_images)}); use an image under one of them")
