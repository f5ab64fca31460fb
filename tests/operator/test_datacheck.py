"""Changed data retrains (reconcile/datacheck.py): the fingerprints prepare read, the data check
Job, a new revision when a task's data changed, and the old revision serving meanwhile."""

from __future__ import annotations

import kubernetes_validate
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import Create, Delete, reconcile, training_revision
from multitask_operator.reconcile.datacheck import CHECK_ANNOTATION
from multitask_operator.reconcile.revision import RETRAIN_ANNOTATION, current_revision

from . import factories as f

CONFIG = OperatorConfig()
SPEC = f.spec(training={"dataSecret": "s3-reader"})
REV = training_revision(MultiTaskModelSpec.model_validate(SPEC))
PRINTS = {"intent": {"train": "sha256:aa"}, "topic": {"train": "etag:1"},
          "summary": {"train": "hf:c0ffee"}}
NOW = "2026-01-01T00:00:00Z"


def jobs(revision=REV, prints=PRINTS):
    """The finished Jobs of `revision`, its prepare reporting `prints`."""
    out = f.finished_jobs(revision)
    out[0] = f.job("prepare", revision, "Succeeded",
                   f.ok("prepare", counts=f.COUNTS, fingerprints=prints))
    return out


def check_job(name: str, phase: str = "Succeeded", prints=PRINTS, ok=True):
    summary = f.ok("fingerprint", fingerprints=prints) if ok else None
    state = f.job("fingerprint", "", phase, summary,
                  raw_message=None if ok else "task intent data.train: access denied")
    return state.__class__(**{**state.__dict__, "name": name, "revision": ""})


def serving_status(**data):
    return {"phase": "Ready", "revision": REV, "observedGeneration": 1,
            "serving": {"revision": REV}, "data": data}


def observed(**fields):
    rev = fields.pop("revision", REV)
    deployed = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    fields.setdefault("jobs", jobs(rev))
    return f.observed(SPEC, deployments=deployed, services={}, **fields)


def created_jobs(out):
    return [a.obj for a in out.actions if isinstance(a, Create) and a.obj["kind"] == "Job"]


def test_prepare_s_fingerprints_are_recorded_and_nothing_is_checked_by_default():
    out = reconcile(observed(), CONFIG)
    assert out.status["data"]["fingerprints"] == PRINTS
    assert out.status["data"]["checkedAt"] == NOW
    assert created_jobs(out) == []


def test_the_annotation_runs_a_check_job_without_the_workspace():
    out = reconcile(observed(annotations={CHECK_ANNOTATION: "now"},
                             status=serving_status(fingerprints=PRINTS, checkedAt=NOW)), CONFIG)
    [job] = created_jobs(out)
    kubernetes_validate.validate(job, "1.35.0", strict=True)
    assert job["metadata"]["name"].startswith("demo-datacheck-")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][3:] == ["fingerprint", "--spec", "/etc/mtm-spec/model.yaml"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3-reader"}}]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    claims = [v for v in job["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    # The pvc:// data claim, read-only; no workspace: it never waits for the training volume.
    assert claims == [{"name": "data-0",
                       "persistentVolumeClaim": {"claimName": "data", "readOnly": True}}]


def test_unchanged_data_is_noted_and_the_check_removed():
    name = "demo-datacheck-1"
    out = reconcile(observed(jobs=jobs() + [check_job(name)],
                             annotations={CHECK_ANNOTATION: "now"},
                             status=serving_status(fingerprints=PRINTS, checkedAt=NOW)), CONFIG)
    assert Delete("batch/v1", "Job", name) in out.actions
    assert CHECK_ANNOTATION in out.remove_annotations
    assert out.status["data"]["message"] == "unchanged" and "token" not in out.status["data"]
    assert created_jobs(out) == []


def test_changed_data_trains_a_new_revision_while_the_old_one_serves():
    new = {**PRINTS, "intent": {"train": "sha256:bb"}}
    out = reconcile(observed(jobs=jobs() + [check_job("demo-datacheck-1", prints=new)],
                             status=serving_status(fingerprints=PRINTS, checkedAt=NOW)), CONFIG)
    data = out.status["data"]
    assert data["token"] and data["fingerprints"] == new
    assert data["message"] == "changed: task intent data.train"
    event = next(e for e in out.events if e.reason == "DataChanged")
    assert "task intent data.train changed" in event.message
    assert out.requeue_after == 1.0
    # The next reconcile: a new revision, its prepare Job, the old revision still serving.
    spec = MultiTaskModelSpec.model_validate(SPEC)
    revision = current_revision(spec, out.status, {})
    assert revision != REV
    later = reconcile(observed(jobs=jobs(), status=out.status), CONFIG)
    assert later.status["revision"] == revision
    [prepare] = created_jobs(later)
    assert prepare["metadata"]["name"] == f"demo-prepare-{revision}"
    ready = next(c for c in later.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ServingPreviousRevision")


def test_a_failed_check_warns_and_changes_nothing():
    out = reconcile(observed(jobs=jobs() + [check_job("demo-datacheck-1", "Failed", ok=False)],
                             status=serving_status(fingerprints=PRINTS, checkedAt=NOW)), CONFIG)
    assert out.status["phase"] == "Ready"
    assert "access denied" in out.status["data"]["message"]
    assert any(e.reason == "DataCheckFailed" and e.type == "Warning" for e in out.events)
    assert "token" not in out.status["data"]


def test_the_interval_runs_a_check_once_it_has_passed():
    spec = f.spec(training={"dataCheckIntervalSeconds": 3600})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    deployed = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    status = {**serving_status(fingerprints=PRINTS, checkedAt=NOW), "revision": rev,
              "serving": {"revision": rev}}
    obs = f.observed(spec, deployments=deployed, services={}, jobs=jobs(rev), status=status)
    obs.now = "2026-01-01T00:30:00Z"
    out = reconcile(obs, CONFIG)
    assert created_jobs(out) == [] and out.requeue_after == 1800
    obs.now = "2026-01-01T01:00:00Z"
    assert len(created_jobs(reconcile(obs, CONFIG))) == 1


def test_the_retrain_annotation_is_a_new_revision():
    spec = MultiTaskModelSpec.model_validate(SPEC)
    assert current_revision(spec, {}, {}) == REV
    forced = current_revision(spec, {}, {RETRAIN_ANNOTATION: "2026-12-02"})
    assert forced != REV
    assert current_revision(spec, {}, {RETRAIN_ANNOTATION: "2026-12-03"}) not in (REV, forced)


def test_the_gate_is_not_part_of_the_revision():
    spec = MultiTaskModelSpec.model_validate(f.spec())
    base = training_revision(spec)
    stricter = MultiTaskModelSpec.model_validate(f.spec(recipe={"qualifyThreshold": 1.0}))
    assert training_revision(stricter) == base
    raw = f.spec()
    raw["tasks"][0]["baseline"]["score"] = 0.3
    assert training_revision(MultiTaskModelSpec.model_validate(raw)) == base
    del raw["tasks"][0]["baseline"]["score"]  # no score: a baseline must be trained
    assert training_revision(MultiTaskModelSpec.model_validate(raw)) != base


def test_a_stricter_gate_re_decides_without_training():
    from multitask_operator.reconcile import Patch
    from multitask_operator.reconcile.cutover import CUTOVER_ANNOTATION

    spec = f.spec()
    spec["tasks"][0]["baseline"]["score"] = 0.9  # intent 0.85 < 0.95 x 0.9; topic still passes
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    assert rev == training_revision(MultiTaskModelSpec.model_validate(f.spec()))
    taken = f.service("intent-svc", annotations={"multitask.ai/takeover-by": f.NAME,
                                                 CUTOVER_ANNOTATION: f.cutover_record(
                                                     "intent-svc")})
    deployed = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    out = reconcile(f.observed(spec, jobs=f.finished_jobs(rev), deployments=deployed,
                               services={"intent-svc": taken,
                                         "topic-svc": f.service("topic-svc")}), CONFIG)
    assert created_jobs(out) == []
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["qualified"] is False and rows["topic"]["qualified"] is True
    restored = [a for a in out.actions if isinstance(a, Patch) and a.name == "intent-svc"]
    assert restored and restored[0].patch["spec"]["selector"]["app"] == "intent-svc"


def test_a_model_deployed_before_keeps_its_revision_until_its_spec_changes():
    spec = MultiTaskModelSpec.model_validate(f.spec())
    old = training_revision(spec, gate=True)
    assert old != training_revision(spec)
    assert current_revision(spec, {"revision": old}, {}) == old
    assert current_revision(spec, {"revision": "0000beef"}, {}) == training_revision(spec)
