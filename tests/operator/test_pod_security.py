"""Every pod the operator renders passes the restricted Pod Security Standard, so a namespace
that enforces it (`pod-security.kubernetes.io/enforce: restricted`) admits training, inference
and gateway pods; and only the operator's own pod holds an API token.

The checks are the restricted profile's controls (kubernetes.io/docs/concepts/security/
pod-security-standards): non-root, no privilege escalation, all capabilities dropped, a
RuntimeDefault seccomp profile, no host namespaces, ports or paths, and only the volume types the
profile allows.
"""

from __future__ import annotations

from typing import Any

import pytest
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.render import gateway, runtimes
from multitask_operator.render.meta import Owner
from multitask_operator.render.serving import render_inference_deployment
from multitask_operator.render.tasks import RoutedTask

from . import factories as f

CONFIG = OperatorConfig(trainer_image="trainer:1")
ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                   "persistentVolumeClaim", "projected", "secret"}
STEPS = ("prepare", "stage2", "evaluate", "export")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    found = []
    context = pod.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{key} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']} is {sorted(kinds)}")
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        own = container.get("securityContext") or {}
        name = container["name"]
        if not own.get("runAsNonRoot", context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true")
        if own.get("runAsUser", context.get("runAsUser")) == 0:
            found.append(f"{name}: runs as uid 0")
        if own.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if own.get("privileged"):
            found.append(f"{name}: privileged")
        capabilities = own.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        seccomp = (own.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccomp profile {seccomp}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"{name}: hostPort")
    return found


def _spec(**training: Any) -> MultiTaskModelSpec:
    return MultiTaskModelSpec.model_validate(f.spec(training=training))


def _job_pods(obj: dict[str, Any]) -> list[dict[str, Any]]:
    kind = obj["kind"]
    if kind == "Job":
        return [obj["spec"]["template"]["spec"]]
    if kind == "JobSet":
        return [job["template"]["spec"]["template"]["spec"]
                for job in obj["spec"]["replicatedJobs"]]
    return []


@pytest.mark.parametrize(("runtime", "nodes"), [("job", 1), ("indexedJob", 2), ("jobset", 2)])
@pytest.mark.parametrize("step", STEPS)
def test_training_pods_are_restricted_and_tokenless(runtime, nodes, step):
    spec = _spec(runtime=runtime, nodes=nodes, resources={"gpus": 1})
    objects = runtimes.render_step(Owner("demo", "ml", "uid"), spec, "rev1", step, CONFIG)
    pods = [pod for obj in objects for pod in _job_pods(obj)]
    assert pods
    for pod in pods:
        assert restricted_violations(pod) == []
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["fsGroup"] == 1000  # a fresh claim is writable


def test_a_trainjob_patches_the_same_security_into_the_runtimes_pods():
    spec = _spec(runtime="kubeflow", nodes=2, resources={"gpus": 1})
    [trainjob] = runtimes.render_step(Owner("demo", "ml", "uid"), spec, "rev1", "stage2", CONFIG)
    patch = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
        "replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert patch["securityContext"]["runAsNonRoot"] is True
    assert patch["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_inference_and_gateway_pods_are_restricted_and_tokenless():
    spec = _spec()
    tasks = [RoutedTask("intent", "classification", "Classify.", ("a", "b"))]
    owner = Owner("demo", "ml", "uid")
    inference = render_inference_deployment(owner, spec, "rev1", tasks, CONFIG)
    configmap = gateway.render_gateway_configmap(owner, spec, "rev1", tasks,
                                                 {"prefix": "", "suffix": ""})
    gw = gateway.render_gateway_deployment(owner, spec, "rev1", configmap, CONFIG)
    for deployment in (inference, gw):
        pod = deployment["spec"]["template"]["spec"]
        assert restricted_violations(pod) == [], deployment["metadata"]["name"]
        assert pod["automountServiceAccountToken"] is False


def test_the_checker_catches_what_the_profile_forbids():
    bad = {"hostNetwork": True, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
           "containers": [{"name": "c", "securityContext": {"privileged": True, "runAsUser": 0},
                           "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    assert len(restricted_violations(bad)) == 9
