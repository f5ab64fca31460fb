"""Multi-node training objects: JobSet, Kubeflow TrainJob, Indexed Job + headless Service.

    .venv/bin/python -m pytest tests/operator/test_render_runtimes.py -q

JobSet and TrainJob are validated against their CRDs' schemas vendored under schemas/ (see the
header of each file for what was copied and from where), with unknown fields refused as the API
server's strict field validation would; the core/v1 and batch/v1 parts they embed (the JobSet's
Job template, the TrainJob's container and pod patch) and the built-ins (Job, Service) are
validated with kubernetes-validate against Kubernetes 1.35.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.render import jobs, runtimes
from multitask_operator.render.meta import Owner

from . import factories as f

K8S = "1.35.0"
CONFIG = OperatorConfig(trainer_image="trainer:1", kubeflow_runtime="torch-distributed")
SCHEMAS = Path(__file__).parent / "schemas"
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035, what TrainJob requires


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields (the API server
    prunes or, with strict field validation, rejects them), except where it preserves them."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def crd_validator(name: str) -> jsonschema.Draft7Validator:
    schema = yaml.safe_load((SCHEMAS / name).read_text())
    schema.pop("definitions", None)  # YAML anchors already inlined them
    return jsonschema.Draft7Validator(_strict(schema))


JOBSET = crd_validator("jobset.x-k8s.io_v1alpha2_jobsets.yaml")
TRAINJOB = crd_validator("trainer.kubeflow.org_v1alpha1_trainjobs.yaml")


def valid(obj: dict[str, Any]) -> dict[str, Any]:
    kubernetes_validate.validate(obj, K8S, strict=True)
    return obj


def model(nodes=4, runtime="jobset", **training) -> MultiTaskModelSpec:
    return MultiTaskModelSpec.model_validate(
        f.spec(training={"nodes": nodes, "runtime": runtime, **training}))


def render(spec: MultiTaskModelSpec, step="stage2", name="demo") -> list[dict[str, Any]]:
    return runtimes.render_step(Owner(name, "ml", "uid"), spec, "abcd1234", step, CONFIG)


def pod_of(template: dict[str, Any]) -> dict[str, Any]:
    return template["spec"]["template"]["spec"]


def flag(command: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in command if a.startswith(f"--{name}="))


class TestJobSet:
    def render(self, **changes):
        [jobset] = render(model(**changes))
        JOBSET.validate(jobset)
        rjob = jobset["spec"]["replicatedJobs"][0]
        # The replicated Job template is a batch/v1 JobSpec: checked as a whole Job.
        valid({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
               "spec": rjob["template"]["spec"]})
        return jobset, rjob

    def test_one_replicated_indexed_job_of_nodes_pods(self):
        jobset, rjob = self.render(nodes=4)
        assert jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
        assert rjob["name"] == "node" and rjob["replicas"] == 1
        spec = rjob["template"]["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
            "Indexed", 4, 4)
        assert jobset["spec"]["network"]["enableDNSHostnames"] is True
        assert jobset["metadata"]["ownerReferences"][0]["uid"] == "uid"
        assert jobset["metadata"]["annotations"]["multitask.ai/step"] == "stage2"

    def test_torchrun_takes_rank_from_the_completion_index_and_pod_0_as_master(self):
        jobset, rjob = self.render(nodes=4, resources={"gpus": 8})
        container = pod_of(rjob["template"])["containers"][0]
        command = container["command"]
        name = jobset["metadata"]["name"]
        assert command[:3] == ["python", "-m", "multitask_trainer.launch"]  # torchrun, exit codes
        assert flag(command, "nnodes") == "4" and flag(command, "nproc-per-node") == "8"
        assert flag(command, "node-rank") == "$(MTM_NODE_RANK)"
        assert flag(command, "master-addr") == f"{name}-node-0-0.{name}"
        assert flag(command, "master-port") == "29500"
        assert command[command.index("-m", 2):] == [
            "-m", "multitask_trainer", "train", "--workspace", "/workspace/revisions/abcd1234",
            "--stage", "stage2"]
        rank = next(e for e in container["env"] if e["name"] == "MTM_NODE_RANK")
        assert rank["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.annotations['batch.kubernetes.io/job-completion-index']")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"

    def test_restarts_all_pods_but_fails_at_once_on_bad_input(self):
        jobset, rjob = self.render()
        policy = jobset["spec"]["failurePolicy"]
        assert policy["maxRestarts"] == jobs.BACKOFF_LIMIT
        assert policy["rules"] == [{"name": "BadInput", "action": "FailJobSet",
                                    "onJobFailureReasons": ["PodFailurePolicy"]}]
        spec = rjob["template"]["spec"]
        assert spec["backoffLimit"] == 0  # one pod down fails the Job: JobSet restarts them all
        assert spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]

    def test_child_jobs_carry_the_model_labels_so_the_job_watch_wakes_it(self):
        _, rjob = self.render()
        labels = rjob["template"]["metadata"]["labels"]
        assert labels["multitask.ai/model"] == "demo" and labels["multitask.ai/step"] == "stage2"

    def test_queue_label_on_the_jobset_which_starts_suspended(self):
        jobset, rjob = self.render(queueName="team-a")
        assert jobset["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert jobset["spec"]["suspend"] is True
        assert "suspend" not in rjob["template"]["spec"]  # Kueue suspends the JobSet only

    def test_a_cpu_node_runs_one_process_with_cpu(self):
        _, rjob = self.render(resources={"gpus": 0})
        command = pod_of(rjob["template"])["containers"][0]["command"]
        assert flag(command, "nproc-per-node") == "1" and command[-1] == "--cpu"

    def test_a_typo_in_a_field_fails_the_schema(self):
        jobset, _ = self.render()
        broken = copy.deepcopy(jobset)
        broken["spec"]["failurePolicy"]["maxRestart"] = 1
        with pytest.raises(jsonschema.ValidationError):
            JOBSET.validate(broken)


class TestTrainJob:
    def render(self, **changes):
        [trainjob] = render(model(runtime="kubeflow", **changes))
        TRAINJOB.validate(trainjob)
        assert DNS_LABEL.match(trainjob["metadata"]["name"])
        trainer = trainjob["spec"]["trainer"]
        patch = trainjob["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]
        pod_patch = pod_of(patch["spec"]["replicatedJobs"][0]["template"])
        # The core/v1 parts, as the pod the runtime will make of them.
        container = {"name": "node", "image": trainer["image"], "command": trainer["command"],
                     "env": trainer["env"], "resources": trainer["resourcesPerNode"],
                     **{k: v for c in pod_patch["containers"] for k, v in c.items()}}
        pod_spec = {k: v for k, v in pod_patch.items() if k != "containers"}
        valid({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
               "spec": {**pod_spec, "containers": [container]}})
        return trainjob, pod_patch

    def test_references_the_configured_runtime_with_nodes_and_resources(self):
        trainjob, _ = self.render(nodes=3, resources={"gpus": 2, "memory": "32Gi"})
        spec = trainjob["spec"]
        assert spec["runtimeRef"] == {"name": "torch-distributed",
                                      "apiGroup": "trainer.kubeflow.org",
                                      "kind": "ClusterTrainingRuntime"}
        trainer = spec["trainer"]
        assert trainer["numNodes"] == 3 and trainer["numProcPerNode"] == 2
        assert trainer["resourcesPerNode"]["limits"] == {"memory": "32Gi",
                                                         "nvidia.com/gpu": "2"}
        assert trainer["image"] == "trainer:1"

    def test_same_trainer_command_with_kubeflows_rendezvous_variables(self):
        trainjob, _ = self.render(nodes=3)
        command = trainjob["spec"]["trainer"]["command"]
        assert command[2] == "multitask_trainer.launch" and flag(command, "nnodes") == "3"
        assert flag(command, "node-rank") == "$(PET_NODE_RANK)"
        assert flag(command, "master-addr") == "$(PET_MASTER_ADDR)"
        assert flag(command, "master-port") == "$(PET_MASTER_PORT)"
        start = command.index("-m", 2) + 1
        assert command[start:start + 2] == [
            "multitask_trainer", "train"]

    def test_workspace_placement_and_labels_reach_the_pods_through_a_runtime_patch(self):
        trainjob, pod_patch = self.render(resources={"nodeSelector": {"gpu": "h100"}})
        volumes = {v["name"] for v in pod_patch["volumes"]}
        assert {"workspace", "spec", "shm"} <= volumes
        mounts = {m["mountPath"] for m in pod_patch["containers"][0]["volumeMounts"]}
        assert "/workspace" in mounts
        assert pod_patch["nodeSelector"] == {"gpu": "h100"}
        patch = trainjob["spec"]["runtimePatches"][0]
        assert patch["manager"] == "multitask.ai/operator"
        job_labels = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
            "template"]["metadata"]["labels"]
        assert job_labels["multitask.ai/model"] == "demo"

    def test_queue_label_and_suspend(self):
        trainjob, _ = self.render(queueName="team-a")
        assert trainjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert trainjob["spec"]["suspend"] is True

    def test_runtime_name_comes_from_the_operator_config(self):
        config = OperatorConfig.from_env({"MTM_KUBEFLOW_RUNTIME": "torch-h100"})
        trainjob = runtimes.render_trainjob(Owner("demo", "ml", "uid"), model(runtime="kubeflow"),
                                            "abcd1234", "stage2", config)
        assert trainjob["spec"]["runtimeRef"]["name"] == "torch-h100"


class TestIndexedJob:
    def render(self, **changes):
        service, job = render(model(runtime="indexedJob", **changes))
        return valid(service), valid(job)

    def test_headless_service_names_pod_0_for_the_rendezvous(self):
        service, job = self.render(nodes=2)
        name = job["metadata"]["name"]
        assert service["metadata"]["name"] == name
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
        pod = pod_of(job)
        assert pod["subdomain"] == name
        command = pod["containers"][0]["command"]
        assert flag(command, "master-addr") == f"{name}-0.{name}"
        assert flag(command, "node-rank") == "$(MTM_NODE_RANK)"

    def test_indexed_with_a_retry_budget_per_node(self):
        _, job = self.render(nodes=3)
        spec = job["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
            "Indexed", 3, 3)
        assert spec["backoffLimit"] == jobs.BACKOFF_LIMIT * 3

    def test_queue_label_on_the_job(self):
        _, job = self.render(queueName="team-a")
        assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert job["spec"]["suspend"] is True


@pytest.mark.parametrize("runtime", ["jobset", "kubeflow", "indexedJob"])
@pytest.mark.parametrize("step", ["prepare", "evaluate", "export"])
def test_steps_without_training_stay_single_pod_jobs(runtime, step):
    [job] = render(model(runtime=runtime), step)
    valid(job)
    assert job["kind"] == "Job" and "completionMode" not in job["spec"]
    assert pod_of(job)["containers"][0]["command"][:2] == ["python", "-m"]


@pytest.mark.parametrize("runtime", ["jobset", "kubeflow", "indexedJob"])
@pytest.mark.parametrize("step", ["stage1", "stage2-generation", "baseline-intent"])
def test_every_training_stage_goes_multi_node(runtime, step):
    objects = render(model(runtime=runtime), step)
    assert objects[-1]["kind"] == runtimes.KINDS[model(runtime=runtime).training.runtime][1]
    assert objects[-1]["metadata"]["annotations"]["multitask.ai/step"] == step


@pytest.mark.parametrize("runtime", ["jobset", "kubeflow", "indexedJob"])
def test_pod_hostnames_fit_a_dns_label_for_the_longest_names(runtime):
    name, step = "m" * 40, "baseline-" + "t" * 50
    spec = model(nodes=1024, runtime=runtime)
    a = runtimes.step_object_name(name, spec, step + "a", "abcd1234")
    b = runtimes.step_object_name(name, spec, step + "b", "abcd1234")
    assert a != b
    longest_pod = f"{a}-node-0-1023" if runtime != "indexedJob" else f"{a}-1023"
    assert len(longest_pod) <= 63 and DNS_LABEL.match(a)
    assert runtimes.step_object_name("demo", spec, "stage2", "abcd1234") == (
        "demo-stage2-abcd1234")
