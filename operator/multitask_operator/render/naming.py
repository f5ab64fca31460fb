"""Names of the objects the operator creates for a MultiTaskModel NAME.

One small function per object, so that the reconcile core, the renderers and the tests agree on
every name without formatting strings in three places. The API caps NAME at 40 characters
(`api.resource.MAX_NAME_LENGTH`), which leaves 23 for a suffix inside a 63-character DNS-1123
label.
"""

from __future__ import annotations

from ..api.spec import MultiTaskModelSpec


def inference_name(name: str) -> str:
    """Deployment and Service of the inference server (TGI or vLLM)."""
    return f"{name}-inference"


def gateway_name(name: str) -> str:
    """Deployment, Service and PodDisruptionBudget of the per-task gateway."""
    return f"{name}-gateway"


def gateway_config_name(name: str) -> str:
    """ConfigMap holding the gateway's task table (`gateway.json`)."""
    return f"{name}-gateway-config"


def workspace_name(name: str) -> str:
    """PVC the operator creates for the workspace when the spec names none."""
    return f"{name}-workspace"


def workspace_claim(name: str, spec: MultiTaskModelSpec) -> str:
    """The PVC that holds the workspace: spec.training.workspace.claimName, else NAME-workspace."""
    return spec.training.workspace.claim_name or workspace_name(name)


def revision_dir(revision: str) -> str:
    """Directory of one training revision, relative to the workspace root."""
    return f"revisions/{revision}"


def export_dir(revision: str) -> str:
    """The exported model of a revision: a merged model, or `base/` + `adapters/<group>/`."""
    return f"{revision_dir(revision)}/export"


def legacy_name(name: str, task: str) -> str:
    """The Service that keeps a task's old backend reachable during a handover: NAME-old-TASK,
    or, when that is longer than a DNS-1123 label, its task part cut and suffixed with a
    hash of the task name (so that two long task names never share one)."""
    full = f"{name}-old-{task}"
    if len(full) <= 63:
        return full
    import hashlib

    digest = hashlib.sha256(task.encode()).hexdigest()[:8]
    return f"{name}-old-{task[:63 - len(name) - 5 - 9].rstrip('-')}-{digest}"
