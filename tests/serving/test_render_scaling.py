"""Renderers of the serving scale objects (render/scaling.py): the HPAs of the inference and
gateway Deployments, the disruption budgets and the topology spread, each validated against the
Kubernetes schema (kubernetes-validate, strict) and checked against the Deployment it scales."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from multitask_operator.api.common import Engine
from multitask_operator.config import OperatorConfig
from multitask_operator.prompting import PLAIN
from multitask_operator.render import (
    render_gateway_configmap,
    render_gateway_deployment,
    render_gateway_hpa,
    render_gateway_pdb,
    render_inference_deployment,
    render_inference_hpa,
    render_inference_pdb,
)
from multitask_operator.render.scaling import QUEUE_METRICS, quantity

from tests.serving.test_render import NAME, OWNER, REV, TASKS, check_ownership, make_spec, valid

AUTOSCALED = {"autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetQueueSize": 4}}


def inference(spec) -> dict:
    return valid(render_inference_deployment(OWNER, spec, REV, TASKS, OperatorConfig()))


def gateway(spec) -> dict:
    configmap = render_gateway_configmap(OWNER, spec, REV, TASKS, PLAIN)
    return valid(render_gateway_deployment(OWNER, spec, REV, configmap,
                                           OperatorConfig()))


def scales(hpa: dict, deployment: dict) -> bool:
    ref = hpa["spec"]["scaleTargetRef"]
    return (ref["apiVersion"], ref["kind"], ref["name"]) == (
        deployment["apiVersion"], deployment["kind"], deployment["metadata"]["name"])


def selects(selector: dict, deployment: dict) -> bool:
    pods = deployment["spec"]["template"]["metadata"]["labels"]
    return selector["matchLabels"].items() <= pods.items()


class TestQueueMetrics:
    def test_every_engine_has_a_queue_metric_the_custom_metrics_api_can_name(self):
        assert set(QUEUE_METRICS) == set(Engine)
        for metric in QUEUE_METRICS.values():
            # custom.metrics.k8s.io puts the name in a URL path segment: no ':' there.
            assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", metric.custom_metric)
        assert QUEUE_METRICS[Engine.TGI].engine_metric == "tgi_queue_size"
        assert QUEUE_METRICS[Engine.VLLM].engine_metric == "vllm:num_requests_waiting"

    def test_the_documented_adapter_rules_serve_every_engine_metric(self):
        """docs/serving.md's prometheus-adapter rules rename each engine's gauge to the name
        the HPA asks for: the docs and QUEUE_METRICS cannot drift apart."""
        docs = (Path(__file__).parents[2] / "docs" / "serving.md").read_text()
        block = docs[docs.index("## Scaling"):].split("```yaml\n# values of the "
                                                      "prometheus-adapter chart\n")[1]
        rules = yaml.safe_load(block.split("```")[0])["rules"]["custom"]
        served = {}
        for rule in rules:
            [engine_metric] = re.findall(r'__name__="([^"]+)"', rule["seriesQuery"])
            assert re.fullmatch(rule["name"]["matches"], engine_metric)
            assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
            served[engine_metric] = rule["name"]["as"]
        assert served == {m.engine_metric: m.custom_metric for m in QUEUE_METRICS.values()}

    @pytest.mark.parametrize(("value", "expected"), [
        (10, 10), (10.0, 10), (2.5, "2500m"), (0.25, "250m"), (0.0001, "1m")])
    def test_queue_targets_are_quantities(self, value, expected):
        assert quantity(value) == expected


class TestInferenceHpa:
    def test_none_without_autoscaling(self):
        assert render_inference_hpa(OWNER, make_spec(serving={"replicas": 3})) is None

    @pytest.mark.parametrize(("engine", "metric"), [
        ("tgi", "tgi_queue_size"), ("vllm", "vllm_num_requests_waiting")])
    def test_scales_the_deployment_on_the_engine_queue(self, engine, metric):
        spec = make_spec(serving={"engine": engine, **AUTOSCALED})
        hpa = valid(render_inference_hpa(OWNER, spec))
        check_ownership(hpa, "inference")
        assert hpa["metadata"]["name"] == f"{NAME}-inference"
        assert scales(hpa, inference(spec))
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        [pods] = hpa["spec"]["metrics"]
        assert pods["type"] == "Pods"
        assert pods["pods"]["metric"] == {"name": metric}
        assert pods["pods"]["target"] == {"type": "AverageValue", "averageValue": 4}

    def test_fractional_queue_target(self):
        spec = make_spec(serving={"autoscaling": {"maxReplicas": 2, "targetQueueSize": 0.5}})
        target = valid(render_inference_hpa(OWNER, spec))["spec"]["metrics"][0]
        assert target["pods"]["target"]["averageValue"] == "500m"

    def test_scales_down_slowly_one_replica_at_a_time(self):
        hpa = render_inference_hpa(OWNER, make_spec(serving=AUTOSCALED))
        down = hpa["spec"]["behavior"]["scaleDown"]
        # Longer than a replica takes to load its weights (Kubernetes' default is 300 s).
        assert down["stabilizationWindowSeconds"] >= 600
        assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
        up = hpa["spec"]["behavior"]["scaleUp"]
        assert up["stabilizationWindowSeconds"] < down["stabilizationWindowSeconds"]

    def test_the_deployment_leaves_replicas_to_it(self):
        assert "replicas" not in inference(make_spec(serving=AUTOSCALED))["spec"]
        assert inference(make_spec(serving={"replicas": 3}))["spec"]["replicas"] == 3


class TestGatewayHpa:
    def test_none_without_autoscaling_and_two_fixed_replicas(self):
        spec = make_spec(serving={"replicas": 4})
        assert render_gateway_hpa(OWNER, spec) is None
        assert gateway(spec)["spec"]["replicas"] == 2

    def test_scales_the_gateway_on_cpu(self):
        spec = make_spec(serving=AUTOSCALED)
        hpa = valid(render_gateway_hpa(OWNER, spec))
        check_ownership(hpa, "gateway")
        deployment = gateway(spec)
        assert scales(hpa, deployment)
        assert "replicas" not in deployment["spec"]
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        [cpu] = hpa["spec"]["metrics"]
        assert cpu == {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 70}}}
        # Utilization is a share of the request: the container must request CPU.
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"]

    def test_never_fewer_than_two_gateways(self):
        spec = make_spec(serving={"autoscaling": {"minReplicas": 1, "maxReplicas": 1}})
        hpa = valid(render_gateway_hpa(OWNER, spec))
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 2)


class TestDisruptionBudgets:
    @pytest.mark.parametrize("serving", [{}, {"replicas": 1},
                                         {"autoscaling": {"minReplicas": 1, "maxReplicas": 1}}])
    def test_no_inference_budget_for_a_single_replica(self, serving):
        assert render_inference_pdb(OWNER, make_spec(serving=serving)) is None

    @pytest.mark.parametrize("serving", [{"replicas": 3},
                                         {"autoscaling": {"minReplicas": 1, "maxReplicas": 4}}])
    def test_one_inference_replica_down_at_a_time(self, serving):
        spec = make_spec(serving=serving)
        pdb = valid(render_inference_pdb(OWNER, spec))
        check_ownership(pdb, "inference")
        assert pdb["metadata"]["name"] == f"{NAME}-inference"
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert selects(pdb["spec"]["selector"], inference(spec))
        assert not selects(pdb["spec"]["selector"], gateway(spec))

    def test_gateway_budget(self):
        spec = make_spec(serving=AUTOSCALED)
        pdb = valid(render_gateway_pdb(OWNER))
        # Half of the pods the HPA wants: one of two, three of six; the key earlier versions
        # set (minAvailable: 1), so that a merge patch never leaves both keys on the budget.
        assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        assert selects(pdb["spec"]["selector"], gateway(spec))
        assert not selects(pdb["spec"]["selector"], inference(spec))


class TestTopologySpread:
    @pytest.mark.parametrize("render", [inference, gateway])
    def test_pods_prefer_other_nodes_and_zones(self, render):
        deployment = render(make_spec(serving=AUTOSCALED))
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == [
            "kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        for constraint in constraints:
            # A preference: one GPU node, or one zone, still schedules every replica.
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["maxSkew"] == 1
            assert selects(constraint["labelSelector"], deployment)
            assert constraint["matchLabelKeys"] == ["pod-template-hash"]
