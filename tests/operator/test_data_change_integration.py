"""Changed data retrains, in the cluster: the real operator on the emulator, the test kubelet
running the trainer's own steps. A model serves revision R (its training faked as finished, its
prepare having read the data files); a task's file is then cut in place, with the spec
unchanged; `multitask.ai/check-data` runs the check Job, which finds the change; a new revision
trains on the new data for real while R keeps serving, then takes over."""

from __future__ import annotations

import shutil

import pytest
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.reconcile import training_revision
from multitask_trainer.fingerprint import task_fingerprints

from .harness import NAMESPACE, Cluster
from .test_serving_scale import finished_training

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]


async def test_cut_data_in_place_trains_a_new_revision_while_the_old_serves(
        tmp_path, monkeypatch, spec_factory, tiny_model):
    spec = spec_factory()
    spec["baseModel"]["path"] = str(tiny_model)
    for task in spec["tasks"]:  # our own copies: this test rewrites one
        copy = tmp_path / "data" / f"{task['name']}.jsonl"
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(task["data"]["train"], copy)
        task["data"]["train"] = str(copy)
    first = training_revision(MultiTaskModelSpec.model_validate(spec))
    prints = task_fingerprints(MultiTaskModelSpec.model_validate(spec))
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await finished_training(cluster, "demo", spec, prints)
        await cluster.start_operator()
        await cluster.apply("demo", spec)
        model = await cluster.wait_phase("demo", {"Ready", "Failed"}, timeout=60)
        assert model["status"]["phase"] == "Ready", model["status"].get("message")
        assert model["status"]["data"]["fingerprints"] == prints

        data = tmp_path / "data" / "sentiment.jsonl"
        data.write_text("".join(data.read_text().splitlines(keepends=True)[:16]))
        await cluster.client.patch("multitask.ai/v1alpha1", "MultiTaskModel", NAMESPACE, "demo",
                                   {"metadata": {"annotations": {
                                       "multitask.ai/check-data": "1"}}})

        async def retraining():
            status = (await cluster.model("demo")).get("status") or {}
            return status if status.get("revision") not in (None, first) else None
        status = await cluster.wait(retraining, 120, "a new revision")
        assert status["data"]["message"] == "changed: task sentiment data.train"
        assert status["serving"]["revision"] == first
        ready = {c["type"]: c for c in status["conditions"]}["Ready"]
        assert (ready["status"], ready["reason"]) == ("True", "ServingPreviousRevision")
        second = status["revision"]

        async def serving_second():
            current = (await cluster.model("demo")).get("status") or {}
            if current.get("phase") == "Failed":
                raise AssertionError(current.get("message"))
            return (current.get("serving") or {}).get("revision") == second and (
                current.get("phase") == "Ready") and current
        status = await cluster.wait(serving_second, 300, "the new revision to serve")
        assert status["plan"]["tasks"][0]["examples"] == 12  # 16 lines, evalFraction 0.25
        assert "multitask.ai/check-data" not in (
            (await cluster.model("demo"))["metadata"].get("annotations") or {})
        reasons = {e.get("reason") for e in cluster.events()}
        assert "DataChanged" in reasons
        assert any("demo-datacheck-" in name for name in cluster.kubelet.started)
