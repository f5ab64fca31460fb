"""Serving storage that scales (spec.serving.modelStorage): the publish step copies a revision's
export to S3 or a shared claim, each inference pod's storage initializer copies it into a
node-local emptyDir, and no inference pod mounts the training workspace."""

from __future__ import annotations

import json

import kubernetes_validate
import pytest
from click.testing import CliRunner
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.cli import cli
from multitask_operator.config import OperatorConfig
from multitask_operator.objectstore import MARKER, StoreError, fetch, publish
from multitask_operator.reconcile import Apply, Create, reconcile, training_revision
from multitask_operator.render import jobs
from multitask_operator.render.meta import Owner
from multitask_operator.render.serving import render_inference_deployment
from multitask_operator.render.tasks import RoutedTask
from multitask_operator.workspace import Workspace
from multitask_operator.workspace import publish as publish_folder
from multitask_trainer.__main__ import main

from tests.trainer.test_remote_data import s3_env, s3_server  # noqa: F401  (fixtures)

from . import factories as f

CONFIG = OperatorConfig()
OWNER = Owner("demo", "ml", "uid-1")
K8S = "1.35.0"
CREDENTIALS = "the Secret named by spec.serving.modelStorage.secret"


def spec_with(uri: str | None, **serving):
    raw = f.spec(serving={"replicas": 2, **serving})
    if uri:
        raw["serving"]["modelStorage"] = {"uri": uri, "secret": "model-store"}
    return MultiTaskModelSpec.model_validate(raw)


def model_folder(root):
    folder = root / "export"
    (folder / "adapters" / "g").mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "adapters" / "g" / "adapter.safetensors").write_bytes(b"\0" * 1000)
    return folder


# ------------------------------------------------------------------ storage round trips


def test_a_claim_round_trip_is_atomic_and_idempotent(tmp_path, monkeypatch):
    monkeypatch.setenv("MTM_PVC_ROOT", str(tmp_path / "pvc"))
    source = model_folder(tmp_path)
    done = publish(source, "pvc://models/demo/r1", CREDENTIALS)
    assert done == {"files": 2, "bytes": 1023, "skipped": False}
    assert (tmp_path / "pvc" / "models" / "demo" / "r1" / MARKER).is_file()
    assert publish(source, "pvc://models/demo/r1", CREDENTIALS)["skipped"] is True
    dest = tmp_path / "pod" / "model"
    dest.parent.mkdir()
    assert fetch("pvc://models/demo/r1", dest, CREDENTIALS)["files"] == 2
    assert (dest / "adapters" / "g" / "adapter.safetensors").stat().st_size == 1000
    assert fetch("pvc://models/demo/r1", dest, CREDENTIALS) == {"skipped": True}
    with pytest.raises(StoreError, match="holds no published model"):
        fetch("pvc://models/demo/r2", tmp_path / "pod" / "other", CREDENTIALS)


def test_an_s3_round_trip_writes_the_marker_last(tmp_path, s3_env):  # noqa: F811
    import boto3

    source = model_folder(tmp_path)
    uri = "s3://support-data/models/demo/r1"
    with pytest.raises(StoreError, match="holds no published model"):
        fetch(uri, tmp_path / "early", CREDENTIALS)
    assert publish(source, uri, CREDENTIALS)["skipped"] is False
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(
        Bucket="support-data", Prefix="models/demo/r1")["Contents"])
    assert keys == ["models/demo/r1/MTM_COMPLETE", "models/demo/r1/adapters/g/adapter.safetensors",
                    "models/demo/r1/config.json"]
    result = CliRunner().invoke(cli, ["fetch-model", "--from", uri, "--to",
                                      str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "model" / "config.json").read_text()) == {
        "model_type": "llama"}
    result = CliRunner().invoke(cli, ["fetch-model", "--from", "s3://support-data/none",
                                      "--to", str(tmp_path / "none")])
    assert result.exit_code == 1 and "holds no published model" in result.output


def test_the_publish_step_copies_a_finished_export(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MTM_PVC_ROOT", str(tmp_path / "pvc"))
    ws = Workspace(tmp_path / "ws")
    assert main(["publish", "--workspace", str(ws.root), "--to", "pvc://models/r1"]) == 2
    assert "no finished export to publish" in capsys.readouterr().err
    with publish_folder(ws.export_dir, {"layout": "merged"}) as scratch:
        (scratch / "model.safetensors").write_bytes(b"1234")
    assert main(["publish", "--workspace", str(ws.root), "--to", "pvc://models/r1"]) == 0
    assert (tmp_path / "pvc" / "models" / "r1" / "model.safetensors").read_bytes() == b"1234"


# ------------------------------------------------------------------ what the renderers emit


def claims(pod_spec) -> dict[str, bool]:
    """Claim -> mounted read-only, for every PVC a pod spec mounts."""
    return {v["persistentVolumeClaim"]["claimName"]: bool(v["persistentVolumeClaim"].get(
        "readOnly")) for v in pod_spec["volumes"] if "persistentVolumeClaim" in v}


TASKS = [RoutedTask(name="intent", type="classification", instruction="?",
                    labels=("a", "b"))]


@pytest.mark.parametrize("uri", ["s3://models/support", "pvc://models/support"])
def test_inference_pods_copy_the_model_and_never_mount_the_workspace(uri):
    spec = spec_with(uri)
    deployment = render_inference_deployment(OWNER, spec, "abcd1234", TASKS, CONFIG)
    kubernetes_validate.validate(deployment, K8S, strict=True)
    pod = deployment["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert init["command"] == ["mtm", "fetch-model", "--from", f"{uri}/abcd1234",
                               "--to", "/mnt/models/model"]
    assert init["image"] == CONFIG.gateway_image  # small: no CUDA, no torch
    assert init["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    engine = pod["containers"][0]
    assert engine["args"][:2] == ["--model-id", "/mnt/models/model"]
    assert {"name": "model", "mountPath": "/mnt/models", "readOnly": True} in (
        engine["volumeMounts"])
    assert {"name": "model", "emptyDir": {"sizeLimit": "100Gi"}} in pod["volumes"]
    # Replicas on any nodes: no claim, or the shared model claim read-only (ReadOnlyMany or
    # ReadWriteMany); the training workspace never.
    assert claims(pod) == ({} if uri.startswith("s3") else {"models": True})


def test_without_model_storage_serving_mounts_the_workspace_read_only():
    deployment = render_inference_deployment(OWNER, spec_with(None), "abcd1234", TASKS, CONFIG)
    pod = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod and claims(pod) == {"demo-workspace": True}


def test_the_publish_job_writes_the_model_storage_and_needs_no_gpu():
    spec = spec_with("pvc://models/support")
    assert spec.serving.model_storage is not None
    step = spec.serving.model_storage.step
    job = jobs.render_job(OWNER, spec, "abcd1234", step, CONFIG)
    kubernetes_validate.validate(job, K8S, strict=True)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][3:] == ["publish", "--workspace", "/workspace/revisions/abcd1234",
                                        "--to", "pvc://models/support/abcd1234"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert container["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    # It reads the workspace (mounted like every step's) and writes the model claim.
    assert claims(job["spec"]["template"]["spec"]) == {"demo-workspace": False, "models": False,
                                                       "data": True}


def test_two_replicas_and_a_retrain_do_not_share_a_read_write_once_volume():
    """The workspace (ReadWriteOnce by default) is mounted by the training steps only, one
    pod at a time; the inference replicas, on any nodes, mount no claim at all (S3)."""
    spec = spec_with("s3://models/support")
    serving = render_inference_deployment(OWNER, spec, "abcd1234", TASKS, CONFIG)
    assert serving["spec"]["replicas"] == 2
    training = jobs.render_job(OWNER, spec, "beef0001", "stage2", CONFIG)
    users = {"inference": claims(serving["spec"]["template"]["spec"]),
             "training": claims(training["spec"]["template"]["spec"])}
    assert users == {"inference": {}, "training": {"demo-workspace": False, "data": True}}


# ------------------------------------------------------------------ the step in the pipeline


def test_publish_runs_after_export_and_serving_waits_for_it():
    raw = f.spec(serving={"modelStorage": {"uri": "s3://models/support"}})
    spec = MultiTaskModelSpec.model_validate(raw)
    rev = training_revision(spec)
    out = reconcile(f.observed(raw, jobs=f.finished_jobs(rev)), CONFIG)
    step = spec.serving.model_storage.step
    created = [a.obj for a in out.actions if isinstance(a, Create) and a.obj["kind"] == "Job"]
    assert [j["metadata"]["annotations"]["multitask.ai/step"] for j in created] == [step]
    assert out.status["phase"] == "Exporting"
    assert not [a for a in out.actions if isinstance(a, Apply)]  # nothing served yet
    published = f.job(step, rev, "Succeeded", f.ok("publish", to=f"s3://models/support/{rev}"))
    out = reconcile(f.observed(raw, jobs=f.finished_jobs(rev) + [published]), CONFIG)
    kinds = {a.obj["kind"] for a in out.actions if isinstance(a, Apply)}
    assert "Deployment" in kinds and out.status["phase"] == "Deploying"
