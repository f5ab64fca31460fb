"""The Helm chart rendered by the real helm v4, for every value set in tests/chart/values/.

    .venv/bin/python -m pytest tests/chart -q      (needs `make tools` for helm and lua5.1)

Every rendered built-in object is validated against the Kubernetes 1.35 OpenAPI schema
(kubernetes-validate, strict: unknown fields fail); custom resources are checked against the
CRDs the chart ships or, for the ServiceMonitor, structurally.
"""

from __future__ import annotations

import kubernetes_validate
import multitask_operator
import pytest
import yaml
from multitask_operator.config import OperatorConfig

from tests.conftest import REPO

from .tools import (
    CHART,
    KUBE_VERSION,
    RELEASE_NAMESPACE,
    VALUE_SETS,
    VALUE_SETS_DIR,
    by_kind,
    helm,
    load_values,
    one,
    parse_manifests,
    render,
    watched,
)

CHART_CRDS = {
    doc["spec"]["group"] + "/" + doc["spec"]["names"]["kind"]: doc
    for path in sorted((CHART / "crds").glob("*.yaml"))
    for doc in parse_manifests(path.read_text())
}


def test_value_sets_cover_the_modes_the_issue_names() -> None:
    assert {"default", "namespaced", "ha", "ha-namespaced", "custom-images"} <= set(VALUE_SETS)


def test_helm_lint_strict_is_clean() -> None:
    result = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_with_value_set(value_set: str) -> None:
    values = VALUE_SETS_DIR / f"{value_set}.yaml"
    result = helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
                  "--values", str(values), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_crds_are_byte_identical_to_the_repository_ones() -> None:
    """The chart's crds/ is a copy of the repository's (the generated CRD and kopf's peering
    CRDs), so `kubectl apply -f crds/` and Helm install the same thing."""
    source = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    assert "multitaskmodels.yaml" in source and "kopf-peerings.yaml" in source
    assert shipped == source, "charts/multitask-operator/crds is stale: run `make crds`"


def test_crds_are_valid_customresourcedefinitions() -> None:
    for crd in CHART_CRDS.values():
        kubernetes_validate.validate(crd, KUBE_VERSION, strict=True)


def _check_custom_resource(obj: dict, objects: list[dict]) -> None:
    group, version = obj["apiVersion"].split("/")
    if group == "monitoring.coreos.com":
        _check_service_monitor(obj, objects)
        return
    crd = CHART_CRDS.get(f"{group}/{obj['kind']}")
    assert crd is not None, f"{obj['kind']} ({obj['apiVersion']}) has no CRD in the chart"
    assert version in [v["name"] for v in crd["spec"]["versions"] if v["served"]]
    namespaced = crd["spec"]["scope"] == "Namespaced"
    assert ("namespace" in obj["metadata"]) == namespaced, f"{obj['kind']} scope is wrong"


def _check_service_monitor(monitor: dict, objects: list[dict]) -> None:
    """The Prometheus Operator's CRD is not ours to ship; check what would break scraping."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}
    services = [
        s for s in by_kind(objects, "Service")
        if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(services) == 1, "the ServiceMonitor must select exactly the metrics Service"
    assert spec["namespaceSelector"]["matchNames"] == [services[0]["metadata"]["namespace"]]
    port_names = {p["name"] for p in services[0]["spec"]["ports"]}
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_object_is_valid(value_set: str) -> None:
    objects = render(value_set)
    assert objects, "nothing rendered"
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Not a built-in kind of Kubernetes 1.35: a custom resource.
            _check_custom_resource(obj, objects)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{value_set}: {name} is invalid: {error.message} at {list(error.path)}")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_runs_under_the_restricted_pod_security_standard(value_set: str) -> None:
    pod = one(render(value_set), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["resources"]["requests"], "requests are needed to schedule it"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for volume in pod.get("volumes", []):
        assert set(volume) <= {"name", "emptyDir", "configMap", "secret", "projected"}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_gets_every_config_variable_and_no_other(value_set: str) -> None:
    values = {"operatorConfig": {}, **load_values(value_set)}
    container = one(render(value_set), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    extra = {e["name"] for e in values.get("extraEnv", [])}
    assert set(env) - extra - {"POD_ID"} == set(OperatorConfig.ENV.values())
    # The rendered environment is what the operator will actually read.
    config = OperatorConfig.from_env({k: v for k, v in env.items() if v is not None})
    images = values["operatorConfig"].get("images", {})
    assert config.trainer_image == images.get("trainer", OperatorConfig.trainer_image)
    assert config.vllm_image == images.get("vllm", OperatorConfig.vllm_image)
    assert config.watch_namespaces == watched(values)
    assert config.service_opt_in is values["operatorConfig"].get("serviceOptIn", True)
    assert config.allowed_images == values["operatorConfig"].get("allowedImages", [])
    workspace = values["operatorConfig"].get("workspace", {})
    assert config.workspace_storage_class == (workspace.get("storageClassName") or None)


def test_chart_app_version_is_the_operator_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == multitask_operator.__version__


def test_chart_defaults_match_the_operator_defaults() -> None:
    """Without overrides the chart passes exactly what the operator would assume by itself."""
    container = one(render("default"), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    # The one difference, on purpose: the chart is namespace-scoped by default (its release's
    # namespace); `mtm operator` on its own watches what its --namespace flags say.
    assert OperatorConfig.from_env(env) == OperatorConfig(watch_namespaces=[RELEASE_NAMESPACE])
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container["image"] == f"ghcr.io/multitask-operator/operator:{chart['appVersion']}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_operator_flags_follow_namespaces_and_replicas(value_set: str) -> None:
    values = load_values(value_set)
    objects = render(value_set)
    deployment = one(objects, "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    namespaces = watched(values)
    assert args[:2] == ["operator", "--liveness=http://0.0.0.0:8080/healthz"]
    assert [a.removeprefix("--namespace=") for a in args if a.startswith("--namespace=")] == (
        namespaces
    )
    replicas = values.get("replicaCount", 1)
    assert deployment["spec"]["replicas"] == replicas
    peerings = by_kind(objects, "ClusterKopfPeering") + by_kind(objects, "KopfPeering")
    if replicas > 1:
        name = values.get("peeringName") or "mto-multitask-operator"
        assert f"--peering={name}" in args and "--standalone" not in args
        assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
        expected = namespaces or [None]
        assert sorted((p["metadata"].get("namespace") or "") for p in peerings) == sorted(
            ns or "" for ns in expected
        )
        assert {p["kind"] for p in peerings} == {"KopfPeering" if namespaces else
                                                   "ClusterKopfPeering"}
        assert {p["metadata"]["name"] for p in peerings} == {name}
    else:
        # Two standalone operators must never overlap, not even during a rollout.
        assert "--standalone" in args and not any(a.startswith("--peering") for a in args)
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert peerings == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_metrics_service_selects_the_operator_pods(value_set: str) -> None:
    values = load_values(value_set)
    objects = render(value_set)
    services = by_kind(objects, "Service")
    if values.get("metrics", {}).get("enabled", True) is False:
        assert services == [] and by_kind(objects, "ServiceMonitor") == []
        return
    service = one(objects, "Service")
    pod = one(objects, "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container_ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert container_ports[service["spec"]["ports"][0]["targetPort"]] == 9090
    assert service["metadata"]["namespace"] == RELEASE_NAMESPACE


def test_custom_images_reach_pod_and_operator() -> None:
    pod = one(render("custom-images"), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/mirror/multitask-operator:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["serviceAccountName"] == "mto-operator"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MTM_TGI_IMAGE"] == "registry.example.com/mirror/text-generation-inference:3.3.6"
    assert env["MTM_WORKSPACE_ACCESS_MODE"] == "ReadWriteMany"
    assert env["HTTPS_PROXY"] == "http://proxy.example.com:3128"
    assert pod["tolerations"][0]["key"] == "dedicated"


def test_notes_say_what_to_do_next() -> None:
    result = helm("install", "--dry-run=client", "mto", str(CHART), "-n", RELEASE_NAMESPACE,
                  "--set", "watchNamespaces={ml}")
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "kubectl -n mto-system rollout status deployment/mto-multitask-operator" in notes
    assert "kubectl apply -n ml -f model.yaml" in notes
    assert "kubectl apply --server-side -f" in notes


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_templates_leave_no_unset_value(value_set: str) -> None:
    assert "<no value>" not in yaml.safe_dump_all(render(value_set))


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_operator_cli_accepts_the_rendered_arguments(value_set: str) -> None:
    """The container's command line parses with the real `mtm` CLI (nothing is started)."""
    from multitask_operator.cli import cli

    container = one(render(value_set), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    command = cli.get_command(None, args[0])
    assert command is not None, f"mtm has no command {args[0]!r}"
    params = command.make_context("mtm operator", list(args[1:])).params
    assert params["liveness"] == "http://0.0.0.0:8080/healthz"
    assert params["metrics_port"] == 9090
    assert list(params["namespaces"]) == watched(load_values(value_set))
