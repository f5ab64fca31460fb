"""The cluster-side helpers without a cluster: paths, apply's comparison, status patches,
metrics, and the `mtm operator` command's registration."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from multitask_operator.cli import cli
from multitask_operator.k8s import metrics
from multitask_operator.k8s.apply import contains
from multitask_operator.k8s.client import path, selector
from multitask_operator.k8s.observe import status_patch
from prometheus_client import REGISTRY


def test_paths_of_core_group_and_custom_resources():
    assert path("v1", "Pod", "ml", "p") == "/api/v1/namespaces/ml/pods/p"
    assert path("batch/v1", "Job", "ml") == "/apis/batch/v1/namespaces/ml/jobs"
    assert path("multitask.ai/v1alpha1", "MultiTaskModel", "ml", "m").endswith(
        "/multitaskmodels/m")
    with pytest.raises(ValueError, match="does not manage Secret"):
        path("v1", "Secret", "ml")
    assert selector({"b": "2", "a": "1"}) == "a=1,b=2"


def test_apply_skips_objects_that_already_hold_the_rendered_values():
    current = {"spec": {"replicas": 1, "template": {"containers": [
        {"name": "c", "image": "i", "terminationMessagePath": "/dev/termination-log"}]}}}
    assert contains(current, {"spec": {"template": {"containers": [{"name": "c", "image": "i"}]}}})
    assert not contains(current, {"spec": {"replicas": 2}})
    assert not contains(current, {"spec": {"template": {"containers": []}}})


def test_status_patch_removes_dropped_keys_and_skips_no_ops():
    old = {"phase": "TrainingStage2", "progress": {"percent": 50}}
    assert status_patch(old, {"phase": "Evaluating"}) == {"phase": "Evaluating",
                                                          "progress": None}
    assert status_patch(old, dict(old)) is None


def test_job_durations_and_phases_reach_the_metrics():
    before = REGISTRY.get_sample_value("mtm_operator_job_duration_seconds_count",
                                       {"step": "stage2"}) or 0
    metrics.job_finished("stage2-classification", "2026-01-01T00:00:00+00:00",
                         "2026-01-01T00:10:00+00:00")
    assert REGISTRY.get_sample_value("mtm_operator_job_duration_seconds_count",
                                     {"step": "stage2"}) == before + 1
    metrics.set_phases({"a": "Ready", "b": "Ready", "c": "Failed"})
    assert REGISTRY.get_sample_value("mtm_operator_models", {"phase": "Ready"}) == 2
    assert REGISTRY.get_sample_value("mtm_operator_models", {"phase": "Pending"}) == 0


def test_mtm_operator_is_a_registered_command():
    result = CliRunner().invoke(cli, ["operator", "--help"])
    assert result.exit_code == 0
    assert "--namespace" in result.output and "--peering" in result.output


class _DiscoveryClient:
    """Serves API discovery for the group/versions given, and counts the look-ups."""

    def __init__(self, served: dict[str, list[str]]):
        self.served, self.calls = served, 0

    async def discover(self, group_version: str):
        self.calls += 1
        plurals = self.served.get(group_version)
        return None if plurals is None else {"resources": [{"name": p} for p in plurals]}


async def test_discovery_finds_served_runtimes_and_looks_again_only_when_one_is_missing(
        monkeypatch):
    from multitask_operator.k8s import discovery

    client = _DiscoveryClient({"jobset.x-k8s.io/v1alpha2": ["jobsets", "jobsets/status"],
                               "trainer.kubeflow.org/v1alpha1": ["trainingruntimes"]})
    found = discovery.Discovery()
    assert await found.served(client) == frozenset({"jobset"})  # no trainjobs resource
    assert await found.served(client, "jobset") == frozenset({"jobset"})
    assert client.calls == 2  # one look-up per API, cached since
    client.served["trainer.kubeflow.org/v1alpha1"] = ["trainjobs"]  # Kubeflow installed
    assert await found.served(client, "kubeflow") == frozenset({"jobset"})  # not stale yet
    monkeypatch.setattr(discovery, "REFRESH_S", -1.0)  # every look-up is stale
    assert await found.served(client, "kubeflow") == frozenset({"jobset", "kubeflow"})
