"""The real kopf operator against the emulated API server, with the test kubelet running the real
trainer on a tiny model. Run: .venv/bin/python -m pytest tests/operator -m integration"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from multitask_operator import rbac

from .harness import Cluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_an_invalid_spec_fails_with_the_field_path(tmp_path, monkeypatch, spec_factory):
    spec = spec_factory()
    spec["tasks"][0]["metric"] = "rouge_l"  # passes the CRD schema, not the pydantic rules
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await cluster.start_operator()
        await cluster.apply("bad", spec)
        model = await cluster.wait_phase("bad", {"Failed"}, timeout=30)
        assert "spec.tasks[0].metric" in model["status"]["message"]
        assert cluster.jobs_created() == {}

        async def invalid_spec_event():  # kopf posts Events in the background, after the patch
            return any(e.get("reason") == "InvalidSpec" for e in cluster.events())
        await cluster.wait(invalid_spec_event, 10, "the InvalidSpec Event")


async def old_services(cluster: Cluster) -> None:
    """Today's per-task Services, each with a pod requesting GPUs (echo's has no pods)."""
    for task, gpus in (("sentiment", 1), ("intent", 2), ("echo", 0)):
        await cluster.create({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": f"{task}-svc", "annotations": {
                                  "multitask.ai/takeover-by": "demo"}},
                              "spec": {"selector": {"app": f"{task}-model"},
                                       "ports": [{"name": "http", "port": 80,
                                                  "targetPort": 8000}]}})
        if gpus:
            await cluster.create({"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": f"{task}-model-0",
                                               "labels": {"app": f"{task}-model"}},
                                  "spec": {"containers": [{
                                      "name": "server", "image": "tgi",
                                      "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]},
                                  "status": {"phase": "Running"}})


@pytest.mark.slow
async def test_apply_restart_ready_delete(tmp_path, monkeypatch, spec_factory, tiny_model):
    """One pipeline (training is the expensive part) covers four cases: apply -> Ready with the
    table and cost figures; the operator killed while stage 2 runs and started again -> the
    same result without duplicate Jobs; delete -> the Services have their selectors back."""
    spec = spec_factory()
    spec["baseModel"]["path"] = str(tiny_model)
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await old_services(cluster)
        await cluster.start_operator()
        await cluster.apply("demo", spec)

        async def stage2_running():
            return any("stage2" in name for name in cluster.kubelet.started)
        await cluster.wait(stage2_running, 120, "the stage2 Job to start")
        await cluster.stop_operator()  # gone mid-stage 2, with everything it held in memory
        await cluster.start_operator()
        model = await cluster.wait_phase("demo", {"Ready", "Failed"}, timeout=240)
        status = model["status"]
        assert status["phase"] == "Ready", status.get("message")
        if os.environ.get("MTM_DUMP_READY_MODEL"):  # for docs: the object as kubectl shows it
            Path(os.environ["MTM_DUMP_READY_MODEL"]).write_text(yaml.safe_dump(model))
        conditions = {c["type"]: c for c in status["conditions"]}
        assert all(conditions[t]["status"] == "True" for t in
                   ("Ready", "Trained", "Evaluated", "Deployed"))
        rows = {r["name"]: r for r in status["tasks"]}
        assert rows["sentiment"]["included"] and rows["intent"]["included"]
        assert rows["echo"]["included"] is False and rows["echo"]["servedBy"] == "own service"
        assert rows["sentiment"]["qualified"] and rows["sentiment"]["servedBy"] == "unified"
        assert 0 <= rows["sentiment"]["score"] <= 1 and rows["sentiment"]["baseline"] == 0.01
        # before: 1 + 2 (pods) + 1 (echo's baseline.gpus); after: 1 (unified) + 1 (echo)
        serving = status["serving"]
        assert (serving["gpusBefore"], serving["gpusAfter"]) == (4, 2)
        assert serving["costReduction"] == 0.5 and serving["revision"] == status["revision"]
        assert status["observedGeneration"] == model["metadata"]["generation"]
        assert [s["name"] for s in status["plan"]["stages"]] == ["stage2"]

        svc = await cluster.get("v1", "Service", "sentiment-svc")
        assert svc["spec"]["selector"]["app.kubernetes.io/component"] == "gateway"
        assert "app" not in svc["spec"]["selector"]
        assert (await cluster.get("v1", "Service", "echo-svc"))["spec"]["selector"] == {
            "app": "echo-model"}
        assert sorted(cluster.kubelet.started) == sorted(cluster.jobs_created())
        assert all(n == 1 for n in cluster.jobs_created().values())
        # kopf posts Events in the background, so the last one may trail the status a little.
        async def all_events_posted():
            return {"StepStarted", "CutOver", "Ready"} <= {e.get("reason")
                                                           for e in cluster.events()}
        await cluster.wait(all_events_posted, 30, "the StepStarted, CutOver and Ready Events")

        await cluster.client.delete("multitask.ai/v1alpha1", "MultiTaskModel", "ml", "demo")
        await cluster.wait(lambda: _gone(cluster, "demo"), 30, "the model to go away")
        for task in ("sentiment", "intent"):
            svc = await cluster.get("v1", "Service", f"{task}-svc")
            assert svc["spec"]["selector"] == {"app": f"{task}-model"}
            assert svc["spec"]["ports"][0]["targetPort"] == 8000
            assert "multitask.ai/cutover" not in (svc["metadata"].get("annotations") or {})
        assert_rbac_covers(cluster)


def assert_rbac_covers(cluster: Cluster) -> None:
    """Every API call the operator (kopf and our client) made is one the chart's RBAC grants:
    rbac.py is what the chart renders, so a call missing there fails on a real cluster."""
    granted = rbac.permissions()[None]
    made = {(group, resource, verb) for agent, group, resource, verb in cluster.emulator.calls
            if agent.startswith(("kopf/", "multitask-operator/"))}
    assert any(r == "jobs" for _, r, _ in made), "no operator call was recorded"
    assert made - granted == set(), "calls the RBAC of rbac.py does not allow"


async def _gone(cluster: Cluster, name: str) -> bool:
    return not await cluster.model(name)


async def test_a_failing_job_fails_the_model_with_its_message(tmp_path, monkeypatch,
                                                              spec_factory):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "great day", "output": "positive"}\n{"input": "x"}\n')
    spec = spec_factory()
    spec["tasks"][0]["data"]["train"] = str(bad)
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await cluster.start_operator()
        await cluster.apply("broken", spec)
        model = await cluster.wait_phase("broken", {"Failed"}, timeout=60)
        message = model["status"]["message"]
        assert "step prepare failed" in message and f"{bad}:2" in message
        conditions = {c["type"]: c for c in model["status"]["conditions"]}
        assert conditions["Ready"]["reason"] == "JobFailed"
        # Bad input fails the Job at once (podFailurePolicy), without burning retries.
        assert len(cluster.kubelet.started) == 1 and len(cluster.jobs_created()) == 1

        async def job_failed_warning():  # posted in the background, may trail the status
            return any(e.get("reason") == "JobFailed" and e.get("type") == "Warning"
                       for e in cluster.events())
        await cluster.wait(job_failed_warning, 10, "the JobFailed warning Event")
