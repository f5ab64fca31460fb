"""The reconcile core and the state parsers with multi-node runtimes: which object a training
stage gets, the API a cluster lacks, JobSet/TrainJob status and the rank-0 pod's result.

    .venv/bin/python -m pytest tests/operator/test_reconcile_runtimes.py -q
"""

from __future__ import annotations

from typing import Any

from multitask_operator.api.results import termination_message
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import (
    RETRY_ANNOTATION,
    Create,
    Delete,
    reconcile,
    training_revision,
)
from multitask_operator.reconcile.observed import (
    FAILED,
    PENDING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    jobset_state,
)
from multitask_operator.render.jobs import STEP_ANNOTATION
from multitask_operator.render.meta import REVISION_ANNOTATION

from . import factories as f

CONFIG = OperatorConfig()
SERVED = frozenset({"jobset", "kubeflow"})


def revision_of(spec: dict[str, Any]) -> str:
    return training_revision(MultiTaskModelSpec.model_validate(spec))


def multi_node(runtime: str = "jobset", nodes: int = 2) -> dict[str, Any]:
    return f.spec(training={"nodes": nodes, "runtime": runtime})


def pod(index: int | None, message: str, created: str = "2026-01-01T00:00:00Z") -> dict:
    meta: dict[str, Any] = {"creationTimestamp": created, "labels": {}}
    if index is not None:
        meta["labels"]["batch.kubernetes.io/job-completion-index"] = str(index)
    return {"metadata": meta, "status": {"containerStatuses": [
        {"state": {"terminated": {"exitCode": 0, "message": message}}}]}}


def jobset(step: str, revision: str, conditions=(), active: int = 0, suspend: bool = False,
           kind: str = "JobSet") -> dict[str, Any]:
    children_key = "replicatedJobsStatus" if kind == "JobSet" else "jobsStatus"
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2" if kind == "JobSet" else
        "trainer.kubeflow.org/v1alpha1",
        "kind": kind,
        "metadata": {"name": f"demo-{step}-{revision}", "creationTimestamp": "2026-01-01T00:00:00Z",
                     "annotations": {STEP_ANNOTATION: step, REVISION_ANNOTATION: revision}},
        "spec": {"suspend": suspend},
        "status": {"conditions": [
            {"type": t, "status": "True", "reason": r, "message": m,
             "lastTransitionTime": "2026-01-01T01:00:00Z"} for t, r, m in conditions],
            children_key: [{"name": "node", "active": active, "ready": 0, "succeeded": 0,
                            "failed": 0, "suspended": 0}]},
    }


class TestJobSetState:
    def test_completed_takes_the_summary_of_the_rank_0_pod(self):
        summary = f.ok("train", "stage2", message="stage stage2 trained")
        pods = [pod(1, "rank 1 says nothing useful", "2026-01-01T00:05:00Z"),
                pod(0, termination_message(summary))]
        state = jobset_state(jobset("stage2", "r1", [("Completed", "AllJobsCompleted", "")]),
                             pods)
        assert state.phase == SUCCEEDED and state.summary == summary
        assert (state.kind, state.api_version) == ("JobSet", "jobset.x-k8s.io/v1alpha2")
        assert (state.step, state.revision) == ("stage2", "r1")
        assert state.finished == "2026-01-01T01:00:00Z"

    def test_failed_falls_back_to_another_nodes_message_when_node_0_wrote_none(self):
        quiet = {"metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "0"}},
                 "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 1}}}]}}
        state = jobset_state(jobset("stage2", "r1", [("Failed", "FailedJobs", "")]),
                             [quiet, pod(1, "CUDA out of memory")])
        assert state.phase == FAILED and state.message == "CUDA out of memory"

    def test_failed_without_pods_reports_the_jobset_reason(self):
        state = jobset_state(jobset("stage2", "r1", [
            ("Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of "
                                             "restarts")]), [])
        assert state.phase == FAILED
        assert state.message == ("ReachedMaxRestarts: jobset failed due to reaching max "
                                 "number of restarts")

    def test_running_suspended_pending(self):
        assert jobset_state(jobset("stage2", "r1", active=1), []).phase == RUNNING
        assert jobset_state(jobset("stage2", "r1", suspend=True), []).phase == SUSPENDED
        assert jobset_state(jobset("stage2", "r1"), []).phase == PENDING

    def test_a_trainjob_reads_the_same_way(self):
        obj = jobset("stage2", "r1", [("Complete", "JobsCompleted", "")], kind="TrainJob")
        state = jobset_state(obj, [pod(0, "not json, the log's tail")])
        assert state.phase == SUCCEEDED and state.kind == "TrainJob"
        assert state.message == "not json, the log's tail"
        obj = jobset("stage2", "r1", active=1, kind="TrainJob")
        assert jobset_state(obj, []).phase == RUNNING


class TestCore:
    def test_the_first_training_stage_becomes_a_jobset(self):
        spec = multi_node()
        rev = revision_of(spec)
        out = reconcile(f.observed(spec, jobs=f.finished_jobs(rev, upto="prepare"),
                                   served_runtimes=SERVED, pvc_exists=True), CONFIG)
        created = [a.obj for a in out.actions if isinstance(a, Create)]
        assert [(o["kind"], o["metadata"]["name"]) for o in created if o["kind"] != "ConfigMap"
                ] == [("JobSet", f"demo-stage1-{rev}")]
        assert out.status["phase"] == "TrainingStage1"
        assert out.status["message"] == f"stage1: JobSet demo-stage1-{rev} created"
        assert any(e.reason == "StepStarted" and "JobSet" in e.message for e in out.events)

    def test_a_read_write_once_workspace_across_nodes_gets_a_warning(self):
        spec = multi_node()
        rev = revision_of(spec)
        jobs = f.finished_jobs(rev, upto="prepare")
        out = reconcile(f.observed(spec, jobs=jobs, served_runtimes=SERVED), CONFIG)
        assert [e.reason for e in out.events if e.type == "Warning"] == ["WorkspaceNotShared"]
        shared = OperatorConfig(workspace_access_mode="ReadWriteMany")
        out = reconcile(f.observed(spec, jobs=jobs, served_runtimes=SERVED), shared)
        assert not [e for e in out.events if e.type == "Warning"]

    def test_prepare_stays_a_job(self):
        out = reconcile(f.observed(multi_node(), served_runtimes=SERVED), CONFIG)
        kinds = {a.obj["kind"] for a in out.actions if isinstance(a, Create)}
        assert "Job" in kinds and "JobSet" not in kinds

    def test_a_running_jobset_is_not_created_again(self):
        spec = multi_node()
        rev = revision_of(spec)
        running = jobset_state(jobset("stage1", rev, active=2), [])
        out = reconcile(f.observed(spec, jobs=[*f.finished_jobs(rev, upto="prepare"), running],
                                   served_runtimes=SERVED, pvc_exists=True,
                                   configmaps={f"demo-spec-{rev}"}), CONFIG)
        assert out.actions == []
        assert out.status["message"] == f"stage1: JobSet demo-stage1-{rev} running"

    def test_a_failed_jobset_fails_the_model_and_a_retry_deletes_it(self):
        spec = multi_node()
        rev = revision_of(spec)
        failed = jobset_state(jobset("stage1", rev, [("Failed", "ReachedMaxRestarts", "x")]), [])
        jobs = [*f.finished_jobs(rev, upto="prepare"), failed]
        out = reconcile(f.observed(spec, jobs=jobs, served_runtimes=SERVED), CONFIG)
        assert out.status["phase"] == "Failed"
        assert out.status["message"] == (f"step stage1 failed (JobSet demo-stage1-{rev}): "
                                         "ReachedMaxRestarts: x")
        retry = reconcile(f.observed(spec, jobs=jobs, served_runtimes=SERVED,
                                     status=out.status, annotations={RETRY_ANNOTATION: ""}),
                          CONFIG)
        assert Delete("jobset.x-k8s.io/v1alpha2", "JobSet", f"demo-stage1-{rev}") in retry.actions
        assert any(isinstance(a, Create) and a.obj["kind"] == "JobSet" for a in retry.actions)

    def test_indexed_job_creates_its_headless_service_first(self):
        spec = multi_node("indexedJob")
        rev = revision_of(spec)
        out = reconcile(f.observed(spec, jobs=f.finished_jobs(rev, upto="prepare"),
                                   pvc_exists=True, configmaps={f"demo-spec-{rev}"}), CONFIG)
        assert [a.obj["kind"] for a in out.actions if isinstance(a, Create)] == ["Service",
                                                                                "Job"]

    def test_a_missing_kubeflow_fails_before_anything_is_created(self):
        out = reconcile(f.observed(multi_node("kubeflow", nodes=1),
                                   served_runtimes=frozenset({"jobset"})), CONFIG)
        assert out.status["phase"] == "Failed" and out.actions == []
        assert out.status["message"] == (
            "spec.training.runtime is kubeflow but the cluster does not serve "
            "trainer.kubeflow.org/v1alpha1 TrainJobs (Kubeflow Trainer); install it or use "
            "runtime job")
        conditions = {c["type"]: c for c in out.status["conditions"]}
        assert conditions["Trained"]["reason"] == "RuntimeUnavailable"

    def test_a_trained_model_keeps_serving_when_the_runtime_goes_away(self):
        spec = multi_node()
        rev = revision_of(spec)
        out = reconcile(f.observed(spec, jobs=f.finished_jobs(rev), served_runtimes=frozenset()),
                        CONFIG)
        assert out.status["phase"] != "Failed"
