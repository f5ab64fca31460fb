"""The real kopf operator on the emulator, where a careless user or a bad line once broke it:
a deletion after the spec became invalid restores every Service (O1), a Service another model
took over is refused and its record kept (O2), a NaN loss never freezes the status (O3).
Run: .venv/bin/python -m pytest tests/operator/test_operator_hardening.py"""

from __future__ import annotations

import json

import pytest
from multitask_operator.api.resource import API_VERSION, KIND

from .harness import NAMESPACE, Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CUTOVER = "multitask.ai/cutover"
OPT_IN = "multitask.ai/takeover-by"
OTHER_GATEWAY = {"app.kubernetes.io/name": "multitask-model",
                 "app.kubernetes.io/instance": "other",
                 "app.kubernetes.io/component": "gateway"}
PORTS = [{"name": "http", "port": 80, "targetPort": 8000}]


def record(model: str, app: str) -> str:
    return json.dumps({"model": model, "selector": {"app": app}, "ports": PORTS, "gpus": 1},
                      sort_keys=True)


async def service(cluster: Cluster, name: str, selector: dict, annotations: dict) -> None:
    await cluster.create({"apiVersion": "v1", "kind": "Service",
                          "metadata": {"name": name, "annotations": annotations},
                          "spec": {"selector": selector, "ports": [
                              {**PORTS[0], "targetPort": 8080}]}})


async def gone(cluster: Cluster, name: str) -> bool:
    return not await cluster.model(name)


async def test_deleting_a_model_whose_spec_became_invalid_restores_its_services(
    tmp_path, monkeypatch, spec_factory
):
    """The state a Ready model leaves (its Service on its gateway, the record on the Service,
    the list on the model), then a spec the CRD accepts and pydantic does not, then delete."""
    spec = spec_factory()
    spec["tasks"][0]["metric"] = "rouge_l"
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await service(cluster, "sentiment-svc", {
            **OTHER_GATEWAY, "app.kubernetes.io/instance": "demo"},
            {CUTOVER: record("demo", "sentiment-model"), OPT_IN: "demo"})
        await cluster.client.create({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": "demo", "namespace": NAMESPACE,
                         "annotations": {"multitask.ai/taken-over": "sentiment-svc"}},
            "spec": spec})
        await cluster.start_operator()
        await cluster.wait_phase("demo", {"Failed"}, timeout=30)
        await cluster.client.delete(API_VERSION, KIND, NAMESPACE, "demo")
        await cluster.wait(lambda: gone(cluster, "demo"), 30, "the model to go away")
        svc = await cluster.get("v1", "Service", "sentiment-svc")
        assert svc["spec"]["selector"] == {"app": "sentiment-model"}
        assert svc["spec"]["ports"] == PORTS
        assert CUTOVER not in (svc["metadata"].get("annotations") or {})


@pytest.mark.slow
async def test_a_shared_service_a_nan_loss_and_an_invalid_edit(tmp_path, monkeypatch,
                                                                 spec_factory, tiny_model):
    spec = spec_factory()
    spec["baseModel"]["path"] = str(tiny_model)
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        # sentiment-svc opted in to demo; intent-svc is already another model's (O2).
        await service(cluster, "sentiment-svc", {"app": "sentiment-model"}, {OPT_IN: "demo"})
        await service(cluster, "intent-svc", OTHER_GATEWAY,
                      {CUTOVER: record("other", "intent-model"), OPT_IN: "demo,other"})
        # Stage 2's pod shows a progress line with a NaN loss before it trains (O3).
        line = {"event": "progress", "stage": "stage2", "step": 1, "totalSteps": 2,
                "percent": 50.0, "loss": float("nan"), "etaSeconds": 5.0}
        cluster.kubelet.hold["stage2"] = json.dumps(line) + "\n"
        await cluster.start_operator()
        await cluster.apply("demo", spec)

        async def nan_progress():
            status = (await cluster.model("demo")).get("status") or {}
            progress = status.get("progress") or {}
            return status if progress.get("stage") == "stage2" and "step" in progress else None
        status = await cluster.wait(nan_progress, 120, "stage 2's progress in the status")
        assert status["phase"] == "TrainingStage2"
        assert status["progress"]["step"] == 1 and "loss" not in status["progress"]
        cluster.kubelet.released.set()

        model = await cluster.wait_phase("demo", {"Ready", "Failed"}, timeout=240)
        status = model["status"]
        assert status["phase"] == "Ready", status.get("message")
        rows = {r["name"]: r for r in status["tasks"]}
        assert rows["sentiment"]["servedBy"] == "unified"
        assert rows["intent"]["qualified"] and rows["intent"]["servedBy"] == "own service"
        assert "already taken over by MultiTaskModel other" in rows["intent"]["cutoverBlocked"]
        assert "not cut over: intent (Service intent-svc is already taken over by " \
               "MultiTaskModel other" in status["message"]
        intent = await cluster.get("v1", "Service", "intent-svc")
        assert intent["spec"]["selector"] == OTHER_GATEWAY  # untouched
        assert json.loads(intent["metadata"]["annotations"][CUTOVER])["model"] == "other"

        async def refused_event():
            return any(e.get("reason") == "CutoverRefused" and e.get("type") == "Warning"
                       and "other" in e.get("message", "") for e in cluster.events())
        await cluster.wait(refused_event, 30, "the CutoverRefused warning")

        # O1: the spec becomes invalid (the CRD accepts it), then the model is deleted.
        await cluster.client.patch(API_VERSION, KIND, NAMESPACE, "demo", {
            "spec": {"tasks": [{**spec["tasks"][0], "metric": "rouge_l"},
                               *spec["tasks"][1:]]}})
        await cluster.wait_phase("demo", {"Failed"}, timeout=30)
        await cluster.client.delete(API_VERSION, KIND, NAMESPACE, "demo")
        await cluster.wait(lambda: gone(cluster, "demo"), 30, "the model to go away")
        sentiment = await cluster.get("v1", "Service", "sentiment-svc")
        assert sentiment["spec"]["selector"] == {"app": "sentiment-model"}
        assert sentiment["spec"]["ports"][0]["targetPort"] == 8080
        intent = await cluster.get("v1", "Service", "intent-svc")
        assert intent["spec"]["selector"] == OTHER_GATEWAY
        assert json.loads(intent["metadata"]["annotations"][CUTOVER])["model"] == "other"
