"""Multi-node training on the emulated API server: the real kopf operator, with the JobSet CRD
installed or not, and the test kubelet running JobSets (node 0 under torchrun as a world of one).

    .venv/bin/python -m pytest tests/operator/test_operator_runtimes.py -m integration
"""

from __future__ import annotations

import pytest

from .harness import Cluster
from .test_operator_integration import assert_rbac_covers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
JOBSET = "jobset.x-k8s.io/v1alpha2"


def multi_node(spec: dict, nodes: int = 2) -> dict:
    spec["training"].update(nodes=nodes, runtime="jobset")
    return spec


async def test_a_runtime_the_cluster_lacks_fails_naming_its_api(tmp_path, monkeypatch,
                                                               spec_factory):
    async with Cluster.start(tmp_path, monkeypatch) as cluster:  # no JobSet CRD
        await cluster.start_operator()
        await cluster.apply("wide", multi_node(spec_factory()))
        model = await cluster.wait_phase("wide", {"Failed"}, timeout=30)
        assert model["status"]["message"] == (
            "spec.training.runtime is jobset but the cluster does not serve "
            "jobset.x-k8s.io/v1alpha2 JobSets; install it or use runtime indexedJob")
        conditions = {c["type"]: c for c in model["status"]["conditions"]}
        assert conditions["Ready"]["reason"] == "RuntimeUnavailable"
        assert cluster.jobs_created() == {}
        assert cluster.jobs_created("persistentvolumeclaims") == {}


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "api_version", "kind", "plural"), [
    ("jobset", JOBSET, "JobSet", "jobsets"),
    ("kubeflow", "trainer.kubeflow.org/v1alpha1", "TrainJob", "trainjobs"),
])
async def test_a_failing_multi_node_stage_fails_the_model_with_node_0s_message(
        tmp_path, monkeypatch, spec_factory, runtime, api_version, kind, plural):
    """No base model: prepare (a Job) succeeds, stage 2 (2 nodes) fails on every attempt (a
    JobSet restarts twice; the TrainJob's runtime has no restarts); the model goes Failed with
    node 0's message, and the object was created once."""
    spec = multi_node(spec_factory())
    spec["training"]["runtime"] = runtime
    async with Cluster.start(tmp_path, monkeypatch, crds={runtime}) as cluster:
        await cluster.start_operator()
        await cluster.apply("wide", spec)
        model = await cluster.wait_phase("wide", {"Failed", "Ready"}, timeout=240)
        status = model["status"]
        [name] = cluster.jobs_created(plural)
        assert status["message"].startswith(f"step stage2 failed ({kind} {name}): ")
        assert "no-model" in status["message"]  # node 0's termination message names the path
        obj = await cluster.get(api_version, kind, name)
        assert "Failed" in {c["type"] for c in obj["status"]["conditions"]}
        assert cluster.jobs_created(plural) == {name: 1}
        assert cluster.kubelet.started.count(name) == 1
        assert [n for n in cluster.jobs_created() if "prepare" in n] == list(
            cluster.jobs_created())  # no stage ran as a plain Job
        assert_rbac_covers(cluster)


@pytest.mark.slow
@pytest.mark.parametrize(("runtime", "plural"), [
    ("jobset", "jobsets"), ("kubeflow", "trainjobs"), ("indexedJob", "jobs")])
async def test_a_multi_node_stage_trains_to_ready_across_an_operator_restart(
        tmp_path, monkeypatch, spec_factory, tiny_model, runtime, plural):
    spec = multi_node(spec_factory())
    spec["training"]["runtime"] = runtime
    spec["baseModel"]["path"] = str(tiny_model)
    crds = {runtime} - {"indexedJob"}  # an Indexed Job needs nothing installed
    async with Cluster.start(tmp_path, monkeypatch, crds=crds) as cluster:
        await cluster.start_operator()
        await cluster.apply("wide", spec)

        async def stage2_created():
            return [n for n in cluster.jobs_created(plural) if n.startswith("wide-stage2-")]
        await cluster.wait(stage2_created, 120, f"the stage2 {runtime} object to be created")
        await cluster.stop_operator()  # gone while the stage runs
        await cluster.start_operator()
        model = await cluster.wait_phase("wide", {"Ready", "Failed"}, timeout=240)
        status = model["status"]
        assert status["phase"] == "Ready", status.get("message")
        [name] = await stage2_created()
        # Created once, across the restart and every re-reconcile, and run once.
        created = {**cluster.jobs_created(), **cluster.jobs_created(plural)}
        assert set(created.values()) == {1}
        assert sorted(created) == sorted(cluster.kubelet.started)
        if runtime == "indexedJob":
            service = await cluster.get("v1", "Service", name)
            assert service["spec"]["clusterIP"] == "None"
        # The trainer really ran under torchrun on node 0 and reported through its pod.
        assert [s["name"] for s in status["plan"]["stages"]] == ["stage2"]
        rows = {r["name"]: r for r in status["tasks"]}
        assert rows["sentiment"]["included"] and rows["sentiment"]["qualified"]
        assert 0 <= rows["sentiment"]["score"] <= 1
        assert_rbac_covers(cluster)
