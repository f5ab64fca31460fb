"""The reconcile core through training: every phase transition, failure, retry and restart."""

from __future__ import annotations

import json

from multitask_operator.api.results import ProgressEvent
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import (
    RETRY_ANNOTATION,
    Create,
    Delete,
    reconcile,
    training_revision,
)

from . import factories as f

CONFIG = OperatorConfig()
REV = training_revision(MultiTaskModelSpec.model_validate(f.spec()))


def created(outcome, kind):
    return [a.obj for a in outcome.actions if isinstance(a, Create) and a.obj["kind"] == kind]


def condition(outcome, kind):
    return next(c for c in outcome.status["conditions"] if c["type"] == kind)


def test_a_new_object_gets_its_workspace_spec_and_prepare_job():
    out = reconcile(f.observed(), CONFIG)
    assert out.status["phase"] == "Preparing"
    assert [j["metadata"]["name"] for j in created(out, "Job")] == [f"demo-prepare-{REV}"]
    assert [p["metadata"]["name"] for p in created(out, "PersistentVolumeClaim")] == [
        "demo-workspace"]
    assert [c["metadata"]["name"] for c in created(out, "ConfigMap")] == [f"demo-spec-{REV}"]
    assert out.status["observedGeneration"] == 1 and out.status["revision"] == REV
    assert out.status["taskCount"] == 3
    assert {c["type"] for c in out.status["conditions"]} == {
        "Ready", "Trained", "Evaluated", "Deployed"}
    assert all(c["reason"] and c["message"] for c in out.status["conditions"])
    assert [e.reason for e in out.events] == ["StepStarted", "StepPrepare"]
    assert out.requeue_after is not None and out.requeue_after <= 30


def test_an_existing_claim_is_used_and_no_pvc_created():
    spec = f.spec(training={"workspace": {"claimName": "shared"}})
    out = reconcile(f.observed(spec), CONFIG)
    assert created(out, "PersistentVolumeClaim") == []
    job = created(out, "Job")[0]
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == "shared"


def test_a_restarted_operator_creates_nothing_twice():
    jobs = [f.job("prepare", REV, "Running")]
    obs = f.observed(jobs=jobs, pvc_exists=True, configmaps={f"demo-spec-{REV}"})
    first = reconcile(obs, CONFIG)
    obs.status = first.status
    second = reconcile(obs, CONFIG)
    for out in (first, second):
        assert out.actions == []
        assert out.status["phase"] == "Preparing"
    assert second.events == []  # no transition, no Event


def test_prepare_done_plans_and_starts_stage1_for_high_resource_tasks():
    out = reconcile(f.observed(jobs=f.finished_jobs(REV, upto="prepare"), pvc_exists=True,
                               configmaps={f"demo-spec-{REV}"}), CONFIG)
    assert out.status["phase"] == "TrainingStage1"
    assert [j["metadata"]["name"] for j in created(out, "Job")] == [f"demo-stage1-{REV}"]
    plan = out.status["plan"]
    assert [s["name"] for s in plan["stages"]] == ["stage1", "stage2"]
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["highResource"] is True and rows["intent"]["examples"] == 2000
    assert rows["summary"]["included"] is False and "generation" in rows["summary"]["group"]


def test_stage1_is_skipped_without_high_resource_tasks():
    spec = f.spec(recipe={"highResourceThreshold": 100000})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    out = reconcile(f.observed(spec, jobs=f.finished_jobs(rev, upto="prepare")), CONFIG)
    assert out.status["phase"] == "TrainingStage2"
    assert [j["metadata"]["name"] for j in created(out, "Job")] == [f"demo-stage2-{rev}"]
    assert out.status["plan"]["skipped"][0]["name"] == "stage1"


def overall(out) -> dict:
    return {k: v for k, v in out.status["progress"].items() if k.startswith("overall")}


def test_running_stage_reports_progress():
    jobs = f.finished_jobs(REV, upto="stage1") + [f.job("stage2", REV, "Running")]
    progress = ProgressEvent(stage="stage2", step=42, total_steps=100, loss=0.7, percent=42.0,
                             eta_seconds=120)
    out = reconcile(f.observed(jobs=jobs, progress=progress), CONFIG)
    assert out.status["phase"] == "TrainingStage2"
    assert out.status["progress"] == {"stage": "stage2", "percent": 42.0, "etaSeconds": 120,
                                      "step": 42, "totalSteps": 100, "loss": 0.7,
                                      **overall(out)}
    # The whole pipeline: stage1 done, stage2 at 42 %, evaluate and export ahead.
    stage1, stage2 = (s["steps"] for s in out.status["plan"]["stages"])
    training = stage1 + stage2
    expected = 100 * (stage1 + 0.42 * stage2) / (training * 1.1)
    assert out.status["progress"]["overallPercent"] == round(expected, 1)
    assert out.status["progress"]["overallEtaSeconds"] == 120  # no stage after this one
    assert created(out, "Job") == []
    assert out.requeue_after <= 30


def test_evaluate_and_export_follow_the_stages():
    out = reconcile(f.observed(jobs=f.finished_jobs(REV, upto="stage2")), CONFIG)
    assert out.status["phase"] == "Evaluating"
    assert condition(out, "Trained")["status"] == "True"
    out = reconcile(f.observed(jobs=f.finished_jobs(REV, upto="evaluate")), CONFIG)
    assert out.status["phase"] == "Exporting"
    assert condition(out, "Evaluated")["status"] == "True"
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["score"] == 0.85 and rows["intent"]["qualified"] is True
    assert rows["intent"]["baseline"] == 0.8
    assert out.status["qualifiedCount"] == 2


def test_failed_job_fails_the_model_with_the_trainer_message_and_stops():
    summary = f.StepSummary(step="prepare", ok=False,
                            message="task intent data.train: data.jsonl:3: output is missing")
    jobs = [f.job("prepare", REV, "Failed", summary)]
    obs = f.observed(jobs=jobs, pvc_exists=True, configmaps={f"demo-spec-{REV}"})
    out = reconcile(obs, CONFIG)
    assert out.status["phase"] == "Failed"
    assert "data.jsonl:3: output is missing" in out.status["message"]
    assert condition(out, "Ready")["reason"] == "JobFailed"
    assert [(e.type, e.reason) for e in out.events] == [("Warning", "JobFailed")]
    assert out.actions == [] and out.requeue_after is None
    obs.status = out.status
    again = reconcile(obs, CONFIG)
    assert again.actions == [] and again.status is None and again.events == []


def test_a_job_killed_without_a_summary_reports_its_log_tail():
    jobs = [f.job("prepare", REV, "Failed", raw_message="Traceback...\nMemoryError: out of memory")]
    out = reconcile(f.observed(jobs=jobs), CONFIG)
    assert out.status["message"].endswith("MemoryError: out of memory")


def test_the_retry_annotation_reruns_the_failed_step_and_keeps_finished_ones():
    jobs = f.finished_jobs(REV, upto="stage1") + [
        f.job("stage2", REV, "Failed", f.StepSummary(step="train", ok=False, message="NaN loss"))]
    obs = f.observed(jobs=jobs, pvc_exists=True, configmaps={f"demo-spec-{REV}"})
    failed = reconcile(obs, CONFIG)
    obs.status = failed.status
    obs.annotations = {RETRY_ANNOTATION: "1"}
    out = reconcile(obs, CONFIG)
    assert [a for a in out.actions if isinstance(a, Delete)] == [
        Delete("batch/v1", "Job", f"demo-stage2-{REV}")]
    assert [j["metadata"]["name"] for j in created(out, "Job")] == [f"demo-stage2-{REV}"]
    assert out.actions.index(Delete("batch/v1", "Job", f"demo-stage2-{REV}")) < len(out.actions) - 1
    assert out.remove_annotations == [RETRY_ANNOTATION]
    assert out.status["phase"] == "TrainingStage2"
    assert "Retrying" in [e.reason for e in out.events]


def test_editing_the_spec_of_a_failed_model_retries_too():
    jobs = [f.job("prepare", REV, "Failed", f.StepSummary(step="prepare", ok=False, message="x"))]
    obs = f.observed(jobs=jobs)
    obs.status = reconcile(obs, CONFIG).status
    obs.generation = 2  # a serving-only edit: same revision, same failed Job
    out = reconcile(obs, CONFIG)
    assert Delete("batch/v1", "Job", f"demo-prepare-{REV}") in out.actions
    assert out.status["phase"] == "Preparing" and out.status["observedGeneration"] == 2


def test_an_invalid_spec_fails_with_the_field_path_and_touches_nothing():
    spec = f.spec()
    spec["tasks"][0]["metric"] = "rouge_l"
    out = reconcile(f.observed(spec), CONFIG)
    assert out.actions == []
    assert out.status["phase"] == "Failed"
    assert "spec.tasks[0].metric" in out.status["message"]
    assert "accuracy or macro_f1" in out.status["message"]
    assert condition(out, "Ready")["reason"] == "InvalidSpec"
    assert out.requeue_after is None


def test_a_succeeded_step_without_a_readable_result_fails_clearly():
    jobs = [f.job("prepare", REV, "Succeeded", raw_message="not json")]
    out = reconcile(f.observed(jobs=jobs), CONFIG)
    assert out.status["phase"] == "Failed"
    assert "prepare" in out.status["message"] and "readable result" in out.status["message"]


def test_a_training_change_is_a_new_revision_and_keeps_the_old_serving():
    old = f.finished_jobs(REV)
    spec = f.spec(training={"learningRate": 1e-4})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    assert rev != REV
    status = {"phase": "Ready", "observedGeneration": 1, "revision": REV,
              "serving": {"revision": REV, "gpusBefore": 4}}
    out = reconcile(f.observed(spec, jobs=old, generation=2, status=status), CONFIG)
    assert [j["metadata"]["name"] for j in created(out, "Job")] == [f"demo-prepare-{rev}"]
    assert out.status["phase"] == "Preparing"
    assert out.status["serving"]["revision"] == REV  # still serving the old one
    assert condition(out, "Ready")["status"] == "True"
    assert condition(out, "Ready")["reason"] == "ServingPreviousRevision"


def test_serving_and_placement_changes_keep_the_revision():
    base = MultiTaskModelSpec.model_validate(f.spec())
    for change in ({"serving": {"replicas": 3, "cutover": "Off"}},
                   {"training": {"resources": {"gpus": 8}, "queueName": "q"}}):
        other = MultiTaskModelSpec.model_validate(f.spec(**change))
        assert training_revision(other) == training_revision(base)
    moved = f.spec()
    moved["tasks"][0]["service"] = {"name": "elsewhere"}
    moved["tasks"][0]["baseline"]["gpus"] = 4
    assert training_revision(MultiTaskModelSpec.model_validate(moved)) == REV


def test_a_runtime_the_cluster_does_not_serve_fails_naming_its_api():
    spec = f.spec(training={"nodes": 2, "runtime": "jobset"})
    out = reconcile(f.observed(spec, served_runtimes=frozenset({"kubeflow"})), CONFIG)
    assert out.status["phase"] == "Failed" and out.actions == []
    assert out.status["message"] == (
        "spec.training.runtime is jobset but the cluster does not serve "
        "jobset.x-k8s.io/v1alpha2 JobSets; install it or use runtime indexedJob")


def test_a_trainer_log_line_reaches_the_status_patch():
    """From the line the trainer prints to the status patch the operator sends: stage 1 of
    two stages at step 3 of 12, its ETA scaled to the steps of stage 2 still ahead."""
    from multitask_operator.api.results import parse_progress_line
    from multitask_operator.k8s.observe import status_patch

    line = ProgressEvent(stage="stage1", step=3, total_steps=12, loss=1.25, percent=25.0,
                         eta_seconds=90.0, learning_rate=1e-4, tokens=900).to_line()
    progress = parse_progress_line("some library warning\n") or parse_progress_line(line)
    jobs = f.finished_jobs(REV, upto="prepare") + [f.job("stage1", REV, "Running")]
    previous = {"phase": "TrainingStage1", "progress": {"stage": "stage1"}}
    out = reconcile(f.observed(jobs=jobs, progress=progress, status=previous), CONFIG)
    patch = status_patch(previous, out.status)
    stage1, stage2 = (s["steps"] for s in out.status["plan"]["stages"])
    assert patch["progress"]["stage"] == "stage1" and patch["progress"]["step"] == 3
    assert patch["progress"]["loss"] == 1.25 and patch["progress"]["etaSeconds"] == 90.0
    # 90 s for the 9 steps left here: 10 s a step, for stage 2's steps too.
    assert patch["progress"]["overallEtaSeconds"] == round(10.0 * (9 + stage2), 1)
    assert 0 < patch["progress"]["overallPercent"] < 25
    json.dumps(patch, allow_nan=False)
