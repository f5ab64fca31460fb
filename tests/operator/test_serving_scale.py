"""Serving scale in the cluster: the operator applies the HPAs and disruption budgets of
spec.serving.autoscaling, leaves the replica count to the HPA, reports it, and removes what a
spec no longer wants. Run: .venv/bin/python -m pytest tests/operator/test_serving_scale.py

The integration test starts from a finished training (the revision's Jobs exist and succeeded,
as after an operator restart), so that no trainer runs: serving is what it checks.
"""

from __future__ import annotations

from typing import Any

import pytest
from multitask_operator.api.resource import API_VERSION, KIND
from multitask_operator.api.results import StepSummary, termination_message
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.k8s.apply import remove
from multitask_operator.reconcile import Absent, training_revision
from multitask_operator.render.jobs import REVISION_LABEL, STEP_ANNOTATION, job_name
from multitask_operator.render.meta import MODEL_LABEL, REVISION_ANNOTATION

from .harness import NAMESPACE, Cluster
from .test_operator_integration import assert_rbac_covers

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")
PDB = ("policy/v1", "PodDisruptionBudget")
DEPLOYMENT = ("apps/v1", "Deployment")


class FakeClient:
    def __init__(self, objects: dict[str, dict]):
        self.objects, self.deleted = objects, []

    async def get(self, api_version, kind, namespace, name):
        return self.objects.get(name)

    async def delete(self, api_version, kind, namespace, name):
        self.deleted.append(name)


async def test_absent_deletes_only_an_object_the_model_owns():
    client = FakeClient({
        "mine": {"metadata": {"ownerReferences": [{"uid": "uid-1"}]}},
        "theirs": {"metadata": {"ownerReferences": [{"uid": "uid-2"}]}},
        "unowned": {"metadata": {}},
    })
    for name in ("mine", "theirs", "unowned", "missing"):
        assert await remove(client, "ml", Absent(*HPA, name, owner_uid="uid-1")) == (
            name == "mine")
    assert client.deleted == ["mine"]


# --- the operator on the emulated API server ------------------------------------------------

def _summaries(spec: dict[str, Any], fingerprints: dict | None = None,
               ) -> list[tuple[str, StepSummary]]:
    """What prepare, stage2, evaluate and export report for the spec of tests/operator/
    conftest.py: 18 training examples per task, no stage 1, both classification tasks qualify."""
    counts = {task["name"]: 18 for task in spec["tasks"]}
    prepared = {"counts": counts, "fingerprints": fingerprints or {}}
    return [
        ("prepare", StepSummary(step="prepare", ok=True, message="ok", details=prepared)),
        ("stage2", StepSummary(step="train", stage="stage2", ok=True, message="ok")),
        ("evaluate", StepSummary(step="evaluate", ok=True, message="ok", details={
            "scores": {"sentiment": 0.9, "intent": 0.8}, "qualified": ["sentiment", "intent"]})),
        ("export", StepSummary(step="export", ok=True, message="ok", details={
            "layout": "merged", "promptFormat": {"prefix": "", "suffix": "", "source": "plain"}})),
    ]


async def finished_training(cluster: Cluster, name: str, spec: dict[str, Any],
                            fingerprints: dict | None = None) -> None:
    """The Jobs of the spec's revision, succeeded, with the trainer's termination messages
    (prepare's with `fingerprints`). Suspended, so that the test kubelet leaves them alone
    (Complete wins over suspend)."""
    revision = training_revision(MultiTaskModelSpec.model_validate(spec))
    for step, summary in _summaries(spec, fingerprints):
        job = job_name(name, step, revision)
        await cluster.create({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "labels": {MODEL_LABEL: name, REVISION_LABEL: revision},
                         "annotations": {STEP_ANNOTATION: step, REVISION_ANNOTATION: revision}},
            "spec": {"suspend": True, "template": {"spec": {"containers": []}}}})
        await cluster.client.patch("batch/v1", "Job", NAMESPACE, job, {"status": {
            "conditions": [{"type": "Complete", "status": "True"}]}}, subresource="status")
        uid = (await cluster.get("batch/v1", "Job", job))["metadata"]["uid"]
        await cluster.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{job}-0",
                         "labels": {"batch.kubernetes.io/controller-uid": uid}},
            "spec": {"containers": [{"name": "trainer", "image": "trainer:test"}]}})
        await cluster.client.patch("v1", "Pod", NAMESPACE, f"{job}-0", {"status": {
            "phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {
                "terminated": {"exitCode": 0, "message": termination_message(summary)}}}]}},
            subresource="status")


@pytest.mark.integration
@pytest.mark.timeout(180)
async def test_autoscaling_on_then_off(tmp_path, monkeypatch, spec_factory):
    spec = spec_factory()
    spec["serving"] = {"engine": "vllm", "resources": {"gpus": 1}, "autoscaling": {
        "minReplicas": 2, "maxReplicas": 4, "targetQueueSize": 3}}
    async with Cluster.start(tmp_path, monkeypatch) as cluster:
        await finished_training(cluster, "scaled", spec)
        await cluster.start_operator()
        await cluster.apply("scaled", spec)

        # The emulator runs no HPA controller: the test plays it. First it raises the
        # Deployment (created without a count) to minReplicas; until then the model waits.
        await cluster.wait_phase("scaled", {"Deploying"}, timeout=60)
        assert await cluster.get(*HPA, "scaled-inference") is not None
        await cluster.client.patch(*DEPLOYMENT, NAMESPACE, "scaled-inference",
                                   {"spec": {"replicas": 2}})
        model = await cluster.wait_phase("scaled", {"Ready", "Failed"}, timeout=60)
        assert model["status"]["phase"] == "Ready", model["status"].get("message")
        uid = model["metadata"]["uid"]

        hpa = await cluster.get(*HPA, "scaled-inference")
        assert hpa["metadata"]["ownerReferences"][0]["uid"] == uid
        assert hpa["spec"]["scaleTargetRef"]["name"] == "scaled-inference"
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "vllm_num_requests_waiting"
        gateway_hpa = await cluster.get(*HPA, "scaled-gateway")
        assert gateway_hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert (await cluster.get(*PDB, "scaled-inference"))["spec"]["maxUnavailable"] == 1
        assert (await cluster.get(*PDB, "scaled-gateway"))["spec"]["minAvailable"] == "50%"
        assert "replicas" not in (await cluster.get(*DEPLOYMENT, "scaled-gateway"))["spec"]
        assert model["status"]["serving"]["replicas"] == 2

        # The HPA scales up. The operator reports the new count and does not put it back: the
        # reconcile that writes the status applied the serving objects first.
        await cluster.client.patch(*DEPLOYMENT, NAMESPACE, "scaled-inference",
                                   {"spec": {"replicas": 3}})

        async def reports(replicas: int):
            model = await cluster.model("scaled")
            status = model.get("status") or {}
            return (status.get("phase") == "Ready"
                    and status.get("observedGeneration") == model["metadata"]["generation"]
                    and (status.get("serving") or {}).get("replicas") == replicas)
        await cluster.wait(lambda: reports(3), 30, "status.serving.replicas 3")
        assert (await cluster.get(*DEPLOYMENT, "scaled-inference"))["spec"]["replicas"] == 3

        # Autoscaling off, one replica: both HPAs and the inference budget go, the counts are
        # the spec's again.
        await cluster.client.patch(API_VERSION, KIND, NAMESPACE, "scaled", {
            "spec": {"serving": {"autoscaling": None, "replicas": 1}}})

        async def removed():
            return all([await cluster.get(*HPA, "scaled-inference") is None,
                        await cluster.get(*HPA, "scaled-gateway") is None,
                        await cluster.get(*PDB, "scaled-inference") is None])
        await cluster.wait(removed, 30, "the HPAs and the inference budget to go")
        await cluster.wait(lambda: reports(1), 30, "status.serving.replicas 1")
        assert (await cluster.get(*DEPLOYMENT, "scaled-inference"))["spec"]["replicas"] == 1
        assert (await cluster.get(*DEPLOYMENT, "scaled-gateway"))["spec"]["replicas"] == 2
        assert await cluster.get(*PDB, "scaled-gateway") is not None
        # Training was finished: the operator created no Job, the kubelet ran none.
        assert cluster.kubelet.started == []
        assert all(n == 1 for n in cluster.jobs_created().values())
        assert_rbac_covers(cluster)
