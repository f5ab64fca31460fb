"""The per-task gateway: ConfigMap (task table), Deployment, Service and PodDisruptionBudget.

    from multitask_operator.render import gateway
    cm = gateway.render_gateway_configmap(owner, spec, revision, tasks, prompt_format)

Pure: spec in, plain dicts out. The ConfigMap holds `gateway.json` in the format that
`multitask_gateway.config.parse_config` reads; the pod template carries a hash of it, so that
a changed task table rolls the gateway pods (a mounted ConfigMap alone would update the file
but not the running process).
"""

from __future__ import annotations

import json
from typing import Any

from ..api.gateway_config import GatewayConfig, Limits, static_wire, wire_hash
from ..api.spec import MultiTaskModelSpec
from ..config import OperatorConfig
from ..prompting import PromptFormat
from . import naming
from .meta import (
    REVISION_ANNOTATION,
    Owner,
    cluster_ip_service,
    http_probe,
    object_meta,
    rolling_deployment,
    scrape_annotations,
)
from .pod import RESTRICTED_CONTAINER, restricted_pod
from .scaling import (
    GATEWAY_MIN_AVAILABLE,
    GATEWAY_MIN_REPLICAS,
    pod_disruption_budget,
    topology_spread,
)
from .serving import inference_url, placement, token_limits
from .tasks import RoutedTask

COMPONENT = "gateway"
PORT = 8080
CONFIG_KEY = "gateway.json"
CONFIG_DIR = "/etc/mtm-gateway"
CONFIG_HASH_ANNOTATION = "multitask.ai/gateway-config-hash"
# Two replicas so that the PodDisruptionBudget (minAvailable 50%) lets a node drain without
# cutting off the tasks whose Services now point here. With serving.autoscaling an HPA on CPU
# owns the count instead (render/scaling.py).
REPLICAS = GATEWAY_MIN_REPLICAS
GATEWAY_UID = 65532  # the conventional "nonroot" user of distroless-style images
def gateway_config(
    name: str,
    spec: MultiTaskModelSpec,
    revision: str,
    tasks: list[RoutedTask],
    prompt_format: PromptFormat | dict[str, Any],
) -> dict[str, Any]:
    """The gateway's task table and limits: a GatewayConfig (validated here, read back by the
    gateway with the same model), as the JSON its ConfigMap holds."""
    if not tasks:
        raise ValueError("the gateway needs at least one task to route")
    if isinstance(prompt_format, dict):
        prompt_format = PromptFormat.from_dict(prompt_format)
    max_input, max_total = token_limits(spec)
    generation_budget = max_total - max_input
    defaults = Limits()
    limits = Limits(
        # A prompt of maxInputTokens is at most ~4 bytes per token of UTF-8 plus JSON
        # escaping; 8 bytes per token leaves room and still bounds what a client can send.
        max_body_bytes=max(1 << 16, 8 * max_input),
        max_new_tokens=generation_budget,
        default_max_new_tokens=min(256, generation_budget),
        max_concurrency_per_task=defaults.max_concurrency_per_task,
        timeout_seconds=defaults.timeout_seconds,
    )
    config = GatewayConfig(
        model=name,
        revision=revision,
        served_model_name=name,
        prompt_format=prompt_format,
        limits=limits,
        cross_task_access=spec.serving.cross_task_access,
        task_list=tuple(t.route() for t in tasks),
    )
    return config.to_wire()


def config_hash(config: dict[str, Any]) -> str:
    """The pod template's hash: of everything but the rollout routes, so that a rollout step
    (a new weight) is reloaded by the running gateways instead of replacing them."""
    return wire_hash(static_wire(config))


def render_gateway_configmap(
    owner: Owner,
    spec: MultiTaskModelSpec,
    revision: str,
    tasks: list[RoutedTask],
    prompt_format: PromptFormat | dict[str, Any],
) -> dict[str, Any]:
    name = owner.name
    config = gateway_config(name, spec, revision, tasks, prompt_format)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(naming.gateway_config_name(name), owner, COMPONENT),
        "data": {CONFIG_KEY: json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False)},
    }


def render_gateway_deployment(
    owner: Owner,
    spec: MultiTaskModelSpec,
    revision: str,
    configmap: dict[str, Any],
    config: OperatorConfig,
) -> dict[str, Any]:
    """The gateway Deployment; `configmap` is what render_gateway_configmap returned."""
    name, namespace = owner.name, owner.namespace
    config_json = json.loads(configmap["data"][CONFIG_KEY])
    container = {
        "name": "gateway",
        "image": config.gateway_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": [
            "mtm",
            "gateway",
            "--config",
            f"{CONFIG_DIR}/{CONFIG_KEY}",
            "--upstream",
            inference_url(name, namespace),
            "--engine",
            str(spec.serving.engine),
            "--port",
            str(PORT),
        ],
        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        # Probes check the gateway itself: while the inference server is down the gateway
        # should stay up and answer 503 with the reason, not vanish from its Service.
        "readinessProbe": http_probe("/readyz", period=5, failures=3, timeout=2),
        "livenessProbe": http_probe("/livez", period=10, failures=3, timeout=2),
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True},
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_annotations = {
        REVISION_ANNOTATION: revision,
        CONFIG_HASH_ANNOTATION: config_hash(config_json),
        **scrape_annotations(PORT),
    }
    pod_spec = {
        "securityContext": restricted_pod(GATEWAY_UID, fs_group=False),
        "automountServiceAccountToken": False,  # it never calls the API server
        **placement(spec.serving.gateway_placement, config.gateway_placement),
        "topologySpreadConstraints": topology_spread(name, COMPONENT),
        "containers": [container],
        "terminationGracePeriodSeconds": 30,
        "volumes": [
            {
                "name": "config",
                "configMap": {"name": configmap["metadata"]["name"]},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    # With autoscaling the gateway's HPA owns the replica count.
    replicas = REPLICAS if spec.serving.autoscaling is None else None
    return rolling_deployment(naming.gateway_name(name), owner, COMPONENT,
                              revision, pod_annotations, pod_spec, replicas)


def render_gateway_service(owner: Owner) -> dict[str, Any]:
    """ClusterIP Service of the gateway; taken-over per-task Services point at its pods too."""
    name = owner.name
    return cluster_ip_service(naming.gateway_name(name), owner, COMPONENT)


def render_gateway_pdb(owner: Owner) -> dict[str, Any]:
    """Half the gateway pods stay up through a drain, whatever the HPA's count (one of the two
    without autoscaling); see render/scaling.py."""
    name = owner.name
    return pod_disruption_budget(owner, COMPONENT, naming.gateway_name(name),
                                 {"minAvailable": GATEWAY_MIN_AVAILABLE})


def gateway_url(name: str, namespace: str) -> str:
    """In-cluster URL of the gateway (status.serving.endpoint)."""
    return f"http://{naming.gateway_name(name)}.{namespace}.svc"
