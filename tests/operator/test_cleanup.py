"""Old revisions are cleaned up (spec.training.workspace.keepRevisions): their Jobs and spec
ConfigMaps by the operator, their workspace folders by the next prepare step; the revision
being trained and the one being served are never touched."""

from __future__ import annotations

from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import (
    Absent,
    Create,
    Delete,
    cleanup,
    reconcile,
    training_revision,
)
from multitask_operator.reconcile.observed import job_state
from multitask_operator.render.jobs import REVISION_LABEL, STEP_ANNOTATION
from multitask_operator.render.meta import REVISION_ANNOTATION
from multitask_trainer.__main__ import main

from tests.operator import factories as f
from tests.trainer.conftest import write_spec

CONFIG = OperatorConfig()
REV = training_revision(MultiTaskModelSpec.model_validate(f.spec()))


def old_job(revision: str, created: str, step: str = "export"):
    return job_state({"metadata": {
        "name": f"demo-{step}-{revision}", "creationTimestamp": created,
        "labels": {REVISION_LABEL: revision},
        "annotations": {STEP_ANNOTATION: step, REVISION_ANNOTATION: revision}},
        "spec": {}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}, [])


OLD = [old_job("aaaa0001", "2026-01-01T00:00:00Z"), old_job("aaaa0001", "2026-01-01T00:05:00Z",
                                                            "prepare"),
       old_job("aaaa0002", "2026-01-02T00:00:00Z"), old_job("aaaa0003", "2026-01-03T00:00:00Z")]


def test_the_newest_revisions_and_the_served_one_are_kept():
    obs = f.observed(jobs=list(OLD), status={"serving": {"revision": "aaaa0001"}})
    spec = MultiTaskModelSpec.model_validate(f.spec())
    assert cleanup.keep(obs, spec, REV) == [REV, "aaaa0003", "aaaa0001"]
    actions, events = cleanup.actions(obs, cleanup.keep(obs, spec, REV))
    assert actions == [Delete("batch/v1", "Job", "demo-export-aaaa0002"),
                       Absent("v1", "ConfigMap", "demo-spec-aaaa0002", f.UID)]
    assert "deleted the Jobs of revisions aaaa0002" in events[0].message


def test_a_new_revision_deletes_what_it_does_not_keep_and_tells_prepare():
    spec = f.spec(training={"workspace": {"keepRevisions": 1}})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    out = reconcile(f.observed(spec, jobs=list(OLD), status={"serving": {
        "revision": "aaaa0002"}}), CONFIG)
    deleted = {a.name for a in out.actions if isinstance(a, Delete)}
    assert deleted == {"demo-export-aaaa0001", "demo-prepare-aaaa0001", "demo-export-aaaa0003"}
    prepare = next(a.obj for a in out.actions if isinstance(a, Create)
                   and a.obj["kind"] == "Job")
    command = prepare["spec"]["template"]["spec"]["containers"][0]["command"]
    at = command.index("--keep-revisions")
    assert command[at + 1] == f"{rev},aaaa0002" and command[-2] == "--spec"
    assert any(e.reason == "RevisionsCleanedUp" for e in out.events)


def test_nothing_is_deleted_while_within_the_count():
    out = reconcile(f.observed(jobs=[old_job("aaaa0003", "2026-01-03T00:00:00Z")]), CONFIG)
    assert not [a for a in out.actions if isinstance(a, (Delete, Absent)) and "aaaa" in a.name]


def test_prepare_deletes_the_other_revision_folders_it_is_not_told_to_keep(tmp_path, capsys):
    spec = write_spec(tmp_path, {"sentiment": 20, "intent": 20})
    revisions = tmp_path / "workspace" / "revisions"
    for name in ("aaaa0001", "aaaa0002", "notarevision", "aaaa0003.deleting"):
        (revisions / name / "export").mkdir(parents=True)
    ws = revisions / "bbbb0001"
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec),
                 "--keep-revisions", "bbbb0001,aaaa0002"]) == 0
    assert sorted(p.name for p in revisions.iterdir()) == ["aaaa0002", "bbbb0001",
                                                           "notarevision"]
    assert "deleted old revisions aaaa0001" in capsys.readouterr().err
    # Again, as after a restart: nothing more to delete, the kept ones stay.
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec),
                 "--keep-revisions", "bbbb0001,aaaa0002"]) == 0
    assert (revisions / "aaaa0002").is_dir()
