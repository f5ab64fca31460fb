"""The trainer Job, workspace PVC and spec ConfigMap, validated against Kubernetes 1.35."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.loader import load_file
from multitask_operator.reconcile import reconcile, training_revision
from multitask_operator.render import jobs
from multitask_operator.render.meta import Owner

from . import factories as f

K8S = "1.35.0"
CONFIG = OperatorConfig()


def model(**changes):
    return MultiTaskModelSpec.model_validate(f.spec(**changes))


def valid(obj):
    kubernetes_validate.validate(obj, K8S, strict=True)
    return obj


class TestJob:
    def render(self, step="stage2", **changes):
        return valid(jobs.render_job(Owner("demo", "ml", "uid"), model(**changes), "abcd1234", step,
                                     CONFIG))

    def container(self, job):
        return job["spec"]["template"]["spec"]["containers"][0]

    def test_only_the_prepare_step_gets_the_data_secret(self):
        for step in ("prepare", "stage2", "evaluate", "export"):
            container = self.container(self.render(step, training={"dataSecret": "s3-reader"}))
            assert container.get("envFrom") == (
                [{"secretRef": {"name": "s3-reader"}}] if step == "prepare" else None), step
        assert "envFrom" not in self.container(self.render("prepare"))

    def test_the_data_secret_and_kept_revisions_retrain_nothing(self):
        base = training_revision(model())
        assert training_revision(model(training={"dataSecret": "s3-reader"})) == base
        assert training_revision(model(training={"workspace": {"keepRevisions": 5}})) == base

    @pytest.mark.parametrize("step", ["prepare", "stage1", "stage2-generation",
                                      "baseline-intent", "evaluate", "export"])
    def test_every_step_is_a_valid_job(self, step):
        job = self.render(step)
        command = self.container(job)["command"]
        assert command[:4] == ["python", "-m", "multitask_trainer",
                               step if step in ("prepare", "evaluate", "export") else "train"]
        assert "/workspace/revisions/abcd1234" in command
        assert job["metadata"]["annotations"]["multitask.ai/step"] == step
        assert job["metadata"]["ownerReferences"][0]["uid"] == "uid"

    def test_prepare_reads_the_spec_from_its_configmap(self):
        job = self.render("prepare")
        assert self.container(job)["command"][-2:] == ["--spec", "/etc/mtm-spec/model.yaml"]
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["spec"]["configMap"]["name"] == "demo-spec-abcd1234"

    def test_gpus_placement_queue_and_token_come_from_the_spec(self):
        job = self.render(
            training={"resources": {"gpus": 4, "memory": "128Gi", "cpu": "8",
                                    "nodeSelector": {"gpu": "h100"},
                                    "tolerations": [{"key": "gpu", "operator": "Exists",
                                                     "effect": "NoSchedule"}]},
                      "queueName": "team-a"},
            baseModel={"id": "org/model", "hfTokenSecret": {"name": "hf", "key": "token"}})
        container, pod = self.container(job), job["spec"]["template"]["spec"]
        assert container["resources"]["limits"] == {"memory": "128Gi", "nvidia.com/gpu": "4"}
        assert container["resources"]["requests"]["cpu"] == "8"
        assert pod["nodeSelector"] == {"gpu": "h100"}
        assert pod["tolerations"][0]["key"] == "gpu"
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert job["spec"]["suspend"] is True
        token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}

    def test_pvc_data_claims_are_mounted_read_only(self):
        job = self.render()
        mounts = {m["mountPath"]: m for m in self.container(job)["volumeMounts"]}
        assert mounts["/mnt/pvc/data"]["readOnly"] is True

    def test_bad_input_fails_the_job_at_once(self):
        rules = self.render()["spec"]["podFailurePolicy"]["rules"]
        assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]

    def test_no_gpu_trains_on_cpu(self):
        job = self.render(training={"resources": {"gpus": 0}})
        assert self.container(job)["command"][-1] == "--cpu"
        assert "nvidia.com/gpu" not in self.container(job)["resources"]["limits"]

    def test_several_gpus_train_one_process_each_under_the_launcher(self):
        command = self.container(self.render(training={"resources": {"gpus": 4}}))["command"]
        assert command[:5] == ["python", "-m", "multitask_trainer.launch", "--standalone",
                               "--nproc-per-node=4"]
        assert command[5:8] == ["-m", "multitask_trainer", "train"]
        # Steps that do not train keep one process whatever the GPUs.
        prepare = self.container(self.render("prepare", training={"resources": {"gpus": 4}}))
        assert prepare["command"][:3] == ["python", "-m", "multitask_trainer"]

    def test_fsdp_is_asked_of_the_training_stages_only(self):
        training = {"fsdp": True, "resources": {"gpus": 8}}
        assert "--fsdp" in self.container(self.render(training=training))["command"]
        evaluate = self.container(self.render("evaluate", training=training))
        assert "--fsdp" not in evaluate["command"]
        assert "--fsdp" not in self.container(self.render())["command"]


class TestJobName:
    def test_short_names_read_plainly(self):
        assert jobs.job_name("demo", "stage2", "abcd1234") == "demo-stage2-abcd1234"

    def test_long_steps_are_cut_and_stay_distinct(self):
        name = "m" * 40
        a = jobs.job_name(name, "baseline-" + "a" * 39 + "x", "abcd1234")
        b = jobs.job_name(name, "baseline-" + "a" * 39 + "y", "abcd1234")
        assert len(a) <= 63 and len(b) <= 63 and a != b


class TestWorkspacePvc:
    def test_size_and_storage_class(self):
        pvc = valid(jobs.render_workspace_pvc(
            Owner("demo", "ml", "uid"), model(training={"workspace": {"size": "50Gi",
                                                               "storageClassName": "fast"}}),
            CONFIG))
        assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
        assert pvc["spec"]["storageClassName"] == "fast"
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]

    def test_operator_default_storage_class(self):
        config = OperatorConfig(workspace_storage_class="standard")
        pvc = valid(jobs.render_workspace_pvc(Owner("demo", "ml", "uid"), model(), config))
        assert pvc["spec"]["storageClassName"] == "standard"


class TestSpecConfigMap:
    def test_holds_a_document_the_trainer_loads(self, tmp_path):
        spec = model()
        cm = valid(jobs.render_spec_configmap(Owner("demo", "ml", "uid"), spec, "abcd1234"))
        assert cm["immutable"] is True
        path = tmp_path / "model.yaml"
        path.write_text(cm["data"]["model.yaml"])
        loaded = load_file(path)
        assert loaded.problems == []
        assert loaded.documents[0].model.spec == spec
        assert yaml.safe_load(cm["data"]["model.yaml"])["metadata"]["name"] == "demo"


def test_every_object_the_reconcile_creates_or_applies_is_valid():
    rev = training_revision(model())
    deployments = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    outcomes = [reconcile(f.observed(), CONFIG),
                reconcile(f.observed(jobs=f.finished_jobs(rev), deployments=deployments,
                                     services={"intent-svc": f.service("intent-svc")}), CONFIG)]
    seen = set()
    for out in outcomes:
        for action in out.actions:
            obj = getattr(action, "obj", None)
            if obj is not None:
                valid(obj)
                seen.add(obj["kind"])
    assert seen >= {"Job", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service",
                    "PodDisruptionBudget"}


class TestStepResources:
    """prepare and export need no GPU: they ask for none unless stepResources says otherwise;
    evaluate takes the training resources unless told."""

    def render(self, step: str, **training) -> dict:
        spec = model(training={"resources": {"gpus": 4, "memory": "128Gi"}, **training})
        job = valid(jobs.render_job(Owner("demo", "ml", "uid"), spec, "abcd1234", step, CONFIG))
        return job["spec"]["template"]["spec"]["containers"][0]

    def test_prepare_and_export_ask_for_no_gpu_by_default(self):
        for step in ("prepare", "export"):
            container = self.render(step)
            assert "nvidia.com/gpu" not in container["resources"]["limits"], step
            assert container["resources"]["limits"]["memory"] == "128Gi"
            assert "--cpu" in container["command"]
        evaluate = self.render("evaluate")
        assert evaluate["resources"]["limits"]["nvidia.com/gpu"] == "4"
        assert "--cpu" not in evaluate["command"]
        assert self.render("stage2")["resources"]["limits"]["nvidia.com/gpu"] == "4"

    def test_each_step_can_be_told(self):
        told = {"stepResources": {"prepare": {"memory": "4Gi", "cpu": "2"},
                                  "evaluate": {"gpus": 0, "memory": "16Gi"},
                                  "export": {"gpus": 1}}}
        prepare = self.render("prepare", **told)
        assert prepare["resources"] == {"requests": {"memory": "4Gi", "cpu": "2"},
                                        "limits": {"memory": "4Gi"}}
        evaluate = self.render("evaluate", **told)
        assert "nvidia.com/gpu" not in evaluate["resources"]["limits"]
        assert "--cpu" in evaluate["command"]
        assert self.render("export", **told)["resources"]["limits"]["nvidia.com/gpu"] == "1"

    def test_they_do_not_change_the_revision(self):
        from multitask_operator.reconcile import training_revision

        plain = model(training={"resources": {"gpus": 4}})
        told = model(training={"resources": {"gpus": 4},
                               "stepResources": {"export": {"gpus": 1}}})
        assert training_revision(plain) == training_revision(told)
