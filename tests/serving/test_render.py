"""Renderers of the inference Deployment/Service and the gateway objects: schema-valid
(kubernetes-validate, strict), and each carries what the engine or the gateway needs."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
from multitask_gateway.config import parse_config
from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.prompting import PLAIN
from multitask_operator.render import (
    RoutedTask,
    naming,
    render_gateway_configmap,
    render_gateway_deployment,
    render_gateway_pdb,
    render_gateway_service,
    render_inference_deployment,
    render_inference_service,
)
from multitask_operator.render.gateway import CONFIG_HASH_ANNOTATION, CONFIG_KEY
from multitask_operator.render.meta import Owner

from tests.conftest import MINIMAL_SPEC

NAME, NS, UID, REV = "support", "ml", "0b6f5b1e-1c1a-4c8e-9d55-2f0a3d4e5f60", "1a2b3c4d"
OWNER = Owner(NAME, NS, UID)
K8S = "1.35.0"

TASKS = [
    RoutedTask("intent", "classification", "Classify the intent.", ("refund", "shipping", "other"),
               service="intent-svc"),
    RoutedTask("summary", "generation", "Summarise."),
]


def make_spec(**changes) -> MultiTaskModelSpec:
    raw = copy.deepcopy(MINIMAL_SPEC)
    for path, value in changes.items():
        node = raw
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return MultiTaskModelSpec.model_validate(raw)


def adapter_tasks() -> list[RoutedTask]:
    return [
        RoutedTask("intent", "classification", "Classify.", ("a", "b"), adapter="classification"),
        RoutedTask("summary", "generation", "Summarise.", adapter="generation"),
    ]


def valid(obj: dict) -> dict:
    kubernetes_validate.validate(obj, K8S, strict=True)
    return obj


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def check_ownership(obj: dict, component: str) -> None:
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == NAME
    assert labels["app.kubernetes.io/component"] == component
    assert labels["app.kubernetes.io/managed-by"] == "multitask-operator"
    assert labels["app.kubernetes.io/name"] == "multitask-model"
    assert labels["multitask.ai/model"] == NAME
    (owner,) = obj["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
                     "name": NAME, "uid": UID, "controller": True, "blockOwnerDeletion": True}
    assert obj["metadata"]["namespace"] == NS


class TestNaming:
    def test_names(self):
        assert naming.inference_name("m") == "m-inference"
        assert naming.gateway_name("m") == "m-gateway"
        assert naming.gateway_config_name("m") == "m-gateway-config"
        assert naming.workspace_name("m") == "m-workspace"

    def test_workspace_claim_prefers_the_spec(self):
        assert naming.workspace_claim("m", make_spec()) == "m-workspace"
        spec = make_spec(**{"training.workspace": {"claimName": "shared"}})
        assert naming.workspace_claim("m", spec) == "shared"


class TestTgiDeployment:
    def render(self, spec=None, tasks=TASKS, config=None) -> dict:
        spec, config = spec or make_spec(), config or OperatorConfig()
        return valid(render_inference_deployment(OWNER, spec, REV, tasks, config))

    def test_merged_model_from_the_revision_export(self):
        deployment = self.render()
        check_ownership(deployment, "inference")
        tgi = container(deployment)
        assert tgi["image"] == OperatorConfig().tgi_image
        args = tgi["args"]
        assert args[args.index("--model-id") + 1] == f"/workspace/revisions/{REV}/export"
        # maxInputTokens defaults to training.maxSeqLength (1024), total to input + 512.
        assert args[args.index("--max-input-tokens") + 1] == "1024"
        assert args[args.index("--max-total-tokens") + 1] == "1536"
        assert "--num-shard" not in args
        assert "LORA_ADAPTERS" not in {e["name"] for e in tgi["env"]}

    def test_spec_image_and_token_limits_win(self):
        spec = make_spec(serving={"image": "tgi:pinned", "maxInputTokens": 300,
                                  "maxTotalTokens": 400, "resources": {"gpus": 2}})
        args = container(self.render(spec))["args"]
        assert container(self.render(spec))["image"] == "tgi:pinned"
        assert args[args.index("--max-input-tokens") + 1] == "300"
        assert args[args.index("--max-total-tokens") + 1] == "400"
        assert args[args.index("--num-shard") + 1] == "2"

    def test_total_tokens_must_leave_room_to_generate(self):
        spec = make_spec(serving={"maxInputTokens": 300, "maxTotalTokens": 300})
        with pytest.raises(ValueError, match="maxTotalTokens \\(300\\) must be greater"):
            self.render(spec)

    def test_adapters_become_lora_adapters(self):
        spec = make_spec(**{"recipe.keep": "all-as-adapters"})
        tgi = container(self.render(spec, adapter_tasks()))
        args = tgi["args"]
        export = f"/workspace/revisions/{REV}/export"
        assert args[args.index("--model-id") + 1] == f"{export}/base"
        env = {e["name"]: e["value"] for e in tgi["env"]}
        assert env["LORA_ADAPTERS"] == (
            f"classification={export}/adapters/classification,"
            f"generation={export}/adapters/generation"
        )

    def test_adapters_need_a_group_per_task(self):
        spec = make_spec(**{"recipe.keep": "all-as-adapters"})
        mixed = [adapter_tasks()[0], RoutedTask("summary", "generation", "Summarise.")]
        with pytest.raises(ValueError, match=r"tasks \['summary'\] have no adapter"):
            self.render(spec, mixed)

    def test_all_as_adapters_with_a_single_group_serves_the_merged_model(self):
        """Filtering kept one group: export merged its one adapter into the base model (same
        answers), so the model is served merged rather than refused after training."""
        spec = make_spec(**{"recipe.keep": "all-as-adapters"})
        tgi = container(self.render(spec, TASKS))
        args = tgi["args"]
        assert args[args.index("--model-id") + 1] == f"/workspace/revisions/{REV}/export"
        assert "LORA_ADAPTERS" not in {e["name"] for e in tgi["env"]}

    def test_pod_volumes_probes_and_gpus(self):
        deployment = self.render(make_spec(serving={"resources": {"gpus": 1, "memory": "40Gi"}}))
        pod = deployment["spec"]["template"]["spec"]
        tgi = pod["containers"][0]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["workspace"]["persistentVolumeClaim"] == {
            "claimName": f"{NAME}-workspace", "readOnly": True}
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
        mounts = {m["name"]: m for m in tgi["volumeMounts"]}
        assert mounts["workspace"]["readOnly"] is True
        assert mounts["shm"]["mountPath"] == "/dev/shm"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert tgi[probe]["httpGet"] == {"path": "/health", "port": "http"}
        assert tgi["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
        assert tgi["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "40Gi"}
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert tgi["securityContext"]["allowPrivilegeEscalation"] is False
        assert deployment["spec"]["template"]["metadata"]["annotations"] == {
            "multitask.ai/revision": REV, "prometheus.io/scrape": "true",
            "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}

    def test_no_gpu_means_no_gpu_resource(self):
        tgi = container(self.render(make_spec(serving={"resources": {"gpus": 0}})))
        assert tgi["resources"] == {}

    def test_replicas_left_to_the_autoscaler(self):
        assert self.render(make_spec(serving={"replicas": 3}))["spec"]["replicas"] == 3
        scaled = self.render(make_spec(serving={"autoscaling": {"maxReplicas": 4}}))
        assert "replicas" not in scaled["spec"]

    def test_selector_ignores_the_revision(self):
        one = render_inference_deployment(OWNER, make_spec(), "r1", TASKS, OperatorConfig())
        two = render_inference_deployment(OWNER, make_spec(), "r2", TASKS, OperatorConfig())
        assert one["spec"]["selector"] == two["spec"]["selector"]
        selector = one["spec"]["selector"]["matchLabels"]
        assert selector.items() <= one["spec"]["template"]["metadata"]["labels"].items()


class TestVllmDeployment:
    def render(self, spec, tasks=TASKS) -> dict:
        config = OperatorConfig(vllm_image="vllm/vllm-openai:v9")
        return valid(render_inference_deployment(OWNER, spec, REV, tasks, config))

    def test_merged_model(self):
        vllm = container(self.render(make_spec(serving={"engine": "vllm"})))
        assert vllm["image"] == "vllm/vllm-openai:v9"
        command = vllm["command"]
        assert command[:3] == ["vllm", "serve", f"/workspace/revisions/{REV}/export"]
        assert command[command.index("--served-model-name") + 1] == NAME
        assert command[command.index("--max-model-len") + 1] == "1536"
        assert "--enable-lora" not in command
        assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"

    def test_adapters_become_lora_modules(self):
        spec = make_spec(serving={"engine": "vllm"}, **{"recipe.keep": "all-as-adapters",
                                                          "training.lora": {"r": 12}})
        command = container(self.render(spec, adapter_tasks()))["command"]
        export = f"/workspace/revisions/{REV}/export"
        assert command[2] == f"{export}/base"
        assert "--enable-lora" in command
        # vLLM accepts only certain ranks; 12 rounds up to 16.
        assert command[command.index("--max-lora-rank") + 1] == "16"
        modules = command[command.index("--lora-modules") + 1:]
        assert modules == [f"classification={export}/adapters/classification",
                           f"generation={export}/adapters/generation"]


class TestInferenceService:
    def test_service(self):
        service = valid(render_inference_service(OWNER))
        check_ownership(service, "inference")
        assert service["metadata"]["name"] == f"{NAME}-inference"
        assert service["spec"]["ports"][0]["targetPort"] == "http"
        deployment = render_inference_deployment(OWNER, make_spec(), REV, TASKS,
                                                 OperatorConfig())
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


class TestGatewayConfigMap:
    def render(self, tasks=TASKS, spec=None, fmt=PLAIN) -> dict:
        return valid(render_gateway_configmap(OWNER, spec or make_spec(), REV, tasks, fmt))

    def test_the_gateway_reads_what_is_rendered(self):
        configmap = self.render()
        check_ownership(configmap, "gateway")
        assert configmap["metadata"]["name"] == f"{NAME}-gateway-config"
        config = parse_config(json.loads(configmap["data"][CONFIG_KEY]))
        assert sorted(config.tasks) == ["intent", "summary"]
        intent = config.tasks["intent"]
        assert intent.labels == ("refund", "shipping", "other")
        assert intent.service == "intent-svc"
        assert intent.instruction == "Classify the intent."
        assert config.prompt_format == PLAIN
        assert config.revision == REV
        # The generation budget is maxTotalTokens - maxInputTokens.
        assert config.limits.max_new_tokens == 512

    def test_prompt_format_from_the_export_file(self):
        fmt = {"prefix": "<|user|>\n", "suffix": "\n<|assistant|>\n", "source": "chat_template"}
        config = parse_config(json.loads(self.render(fmt=fmt)["data"][CONFIG_KEY]))
        assert config.prompt_format.render("Do.", "x") == "<|user|>\nDo.\n\nx\n<|assistant|>\n"

    def test_adapters_are_routed(self):
        spec = make_spec(**{"recipe.keep": "all-as-adapters"})
        config = parse_config(json.loads(self.render(adapter_tasks(), spec)["data"][CONFIG_KEY]))
        assert config.tasks["intent"].adapter == "classification"

    def test_no_tasks_is_an_error(self):
        with pytest.raises(ValueError, match="at least one task"):
            self.render(tasks=[])

    def test_classification_without_labels_is_an_error(self):
        with pytest.raises(ValueError, match="task intent is a classification task without"):
            RoutedTask("intent", "classification", "Classify.")


class TestGatewayDeployment:
    def render(self, tasks=TASKS, engine="tgi") -> dict:
        spec = make_spec(serving={"engine": engine})
        configmap = render_gateway_configmap(OWNER, spec, REV, tasks, PLAIN)
        return valid(render_gateway_deployment(OWNER, spec, REV, configmap,
                                               OperatorConfig(gateway_image="gw:1")))

    def test_command_points_at_the_inference_service(self):
        deployment = self.render(engine="vllm")
        check_ownership(deployment, "gateway")
        gateway = container(deployment)
        assert gateway["image"] == "gw:1"
        command = gateway["command"]
        assert command[:2] == ["mtm", "gateway"]
        assert command[command.index("--upstream") + 1] == f"http://{NAME}-inference.{NS}.svc:80"
        assert command[command.index("--engine") + 1] == "vllm"
        assert command[command.index("--config") + 1] == "/etc/mtm-gateway/gateway.json"
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["config"]["configMap"]["name"] == f"{NAME}-gateway-config"

    def test_restricted_security_context(self):
        deployment = self.render()
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container(deployment)["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}

    def test_a_new_task_table_rolls_the_pods(self):
        one = self.render()["spec"]["template"]["metadata"]["annotations"]
        two = self.render(TASKS[:1])["spec"]["template"]["metadata"]["annotations"]
        assert one[CONFIG_HASH_ANNOTATION] != two[CONFIG_HASH_ANNOTATION]
        assert one[CONFIG_HASH_ANNOTATION] == self.render()["spec"]["template"]["metadata"][
            "annotations"][CONFIG_HASH_ANNOTATION]

    def test_service_and_pdb_select_the_gateway_pods(self):
        deployment = self.render()
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        service = valid(render_gateway_service(OWNER))
        pdb = valid(render_gateway_pdb(OWNER))
        check_ownership(service, "gateway")
        check_ownership(pdb, "gateway")
        assert service["spec"]["selector"].items() <= pods.items()
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pods.items()
        assert pdb["spec"]["minAvailable"] == "50%"
        assert deployment["spec"]["replicas"] >= 2  # else the PDB blocks every node drain


class TestPlacement:
    """Inference and gateway pods go where the spec says, over the operator's defaults."""

    GPU_POOL = {"nodeSelector": {"pool": "gpu"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                 "effect": "NoSchedule"}],
                "priorityClassName": "serving"}

    def pods(self, spec, config):
        inference = valid(render_inference_deployment(OWNER, spec, REV, TASKS, config))
        configmap = render_gateway_configmap(OWNER, spec, REV, TASKS, PLAIN)
        gateway = valid(render_gateway_deployment(OWNER, spec, REV, configmap, config))
        return inference["spec"]["template"]["spec"], gateway["spec"]["template"]["spec"]

    def test_nothing_set_nothing_rendered(self):
        inference, gateway = self.pods(make_spec(), OperatorConfig())
        for pod in (inference, gateway):
            assert not {"nodeSelector", "tolerations", "affinity", "priorityClassName"} & set(pod)

    def test_operator_defaults_and_spec_fields_over_them(self):
        config = OperatorConfig(inference_placement=self.GPU_POOL,
                                gateway_placement={"priorityClassName": "gateways"})
        affinity = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": {"a": "b"}}}}]}}
        spec = make_spec(serving={"placement": {"nodeSelector": {"pool": "h100"},
                                                "affinity": affinity},
                                  "gatewayPlacement": {"nodeSelector": {"pool": "cpu"}}})
        inference, gateway = self.pods(spec, config)
        assert inference["nodeSelector"] == {"pool": "h100"}  # the spec's field wins
        assert inference["tolerations"] == self.GPU_POOL["tolerations"]  # the default stays
        assert inference["priorityClassName"] == "serving"
        assert inference["affinity"] == affinity
        assert gateway["nodeSelector"] == {"pool": "cpu"}
        assert gateway["priorityClassName"] == "gateways"

    def test_a_bad_default_is_a_render_error_naming_the_field(self):
        config = OperatorConfig(inference_placement={"nodeSelector": "gpu"})
        with pytest.raises(ValueError, match="nodeSelector"):
            self.pods(make_spec(), config)

    def test_the_operator_reads_its_defaults_as_json(self):
        raw = '{"nodeSelector": {"a": "b"}}'
        config = OperatorConfig.from_env({"MTM_INFERENCE_PLACEMENT": raw})
        assert config.inference_placement == {"nodeSelector": {"a": "b"}}
        with pytest.raises(ValueError, match="MTM_GATEWAY_PLACEMENT is not a JSON object"):
            OperatorConfig.from_env({"MTM_GATEWAY_PLACEMENT": "pool=gpu"})
