"""A test kubelet: runs each trainer Job's container command as a local process.

    kubelet = Kubelet(client, emulator, root=tmp_path)
    task = asyncio.create_task(kubelet.run("ml"))

For every Job that is not suspended it creates a Pod (labelled like the Job controller does),
runs the container's command with the volumes mapped to local folders (PVC CLAIM ->
ROOT/pvc/CLAIM, a ConfigMap volume -> its data written under ROOT/configmaps/NAME), streams the
process's stdout into the emulator's pod log, and writes the Job and Pod status as the Job
controller and the kubelet would: the termination message (the trainer's file, or the log's tail
under FallbackToLogsOnError), retries up to backoffLimit, and the podFailurePolicy's FailJob on
its exit codes. Deployments are marked available once their pods "started". Everything goes
through the emulator's HTTP API, so the operator sees the same watch events as in a cluster.

JobSets and TrainJobs (when the emulator serves them; a TrainJob as the JobSet that Kubeflow's
torch runtime makes of it) are run as the JobSet and Job controllers would, on one machine: one
pod per node, where node 0 runs the container's real `torchrun` command as a world of one
(--nnodes 1 --nproc-per-node 1, master 127.0.0.1), so the trainer really trains under torchrun,
and the other nodes' pods end with node 0's exit code. A JobSet's failurePolicy is honoured: a
failed attempt restarts every pod, up to maxRestarts, unless a FailJobSet rule matches the child
Job's failure reason (PodFailurePolicy for the trainer's bad-input exit code).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from multitask_operator.k8s.client import ApiError, Client

from .emulator import Emulator

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    def __init__(self, client: Client, emulator: Emulator, root: Path, poll: float = 0.1):
        self.client, self.emulator, self.root, self.poll = client, emulator, root, poll
        self.started: list[str] = []  # Job names, once per Job object run
        self._seen: set[str] = set()  # Job uids
        self._tasks: set[asyncio.Task] = set()
        # Pod-name fragment -> log text: such a pod shows that log, Running, until `released`
        # is set, then runs its command (a test's way to show the operator a given log line).
        self.hold: dict[str, str] = {}
        self.released = asyncio.Event()

    async def run(self, namespace: str) -> None:
        try:
            while True:
                try:
                    await self._tick(namespace)
                except (TimeoutError, ApiError) as err:
                    # Like a real kubelet: an API hiccup is retried on the next tick.
                    log.warning("kubelet tick failed: %r", err)
                await asyncio.sleep(self.poll)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _tick(self, namespace: str) -> None:
        for job in await self.client.list("batch/v1", "Job", namespace):
            uid = job["metadata"]["uid"]
            if uid in self._seen or job["spec"].get("suspend"):
                continue
            self._seen.add(uid)
            self.started.append(job["metadata"]["name"])
            task = asyncio.create_task(self._run_job_logged(namespace, job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        for crd, (api_version, kind) in GANGS.items():
            if crd not in self.emulator.crds:
                continue
            for gang in await self.client.list(api_version, kind, namespace):
                uid = gang["metadata"]["uid"]
                if uid in self._seen or gang["spec"].get("suspend"):
                    continue
                self._seen.add(uid)
                self.started.append(gang["metadata"]["name"])
                gang = {"apiVersion": api_version, "kind": kind, **gang}
                task = asyncio.create_task(self._run_jobset(namespace, gang))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        for deployment in await self.client.list("apps/v1", "Deployment", namespace):
            await self._mark_available(namespace, deployment)

    async def _mark_available(self, namespace: str, deployment: dict[str, Any]) -> None:
        generation = deployment["metadata"].get("generation", 1)
        status = deployment.get("status") or {}
        if status.get("observedGeneration") == generation:
            return
        replicas = deployment["spec"].get("replicas", 1)
        await self.client.patch("apps/v1", "Deployment", namespace,
                                 deployment["metadata"]["name"], {"status": {
                                     "observedGeneration": generation, "replicas": replicas,
                                     "updatedReplicas": replicas, "readyReplicas": replicas,
                                     "availableReplicas": replicas,
                                     "conditions": [{"type": "Available", "status": "True"},
                                                    {"type": "Progressing", "status": "True"}]}},
                                 subresource="status")

    # ----------------------------------------------------------------- Jobs

    async def _run_job_logged(self, namespace: str, job: dict[str, Any]) -> None:
        try:
            await self._run_job(namespace, job)
        except Exception:
            log.exception("kubelet: Job %s broke", job["metadata"]["name"])
            raise
        except BaseException:
            log.warning("kubelet: Job %s stopped", job["metadata"]["name"], exc_info=True)
            raise

    async def _run_job(self, namespace: str, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        limit = job["spec"].get("backoffLimit", 6)
        fail_codes = set()
        for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules", []):
            if rule["action"] == "FailJob" and "onExitCodes" in rule:
                fail_codes |= set(rule["onExitCodes"]["values"])
        # An Indexed Job of N pods (runtime indexedJob) runs as a gang: see _run_nodes.
        indexed = job["spec"].get("completionMode") == "Indexed"
        nodes = job["spec"].get("completions", 1) if indexed else 1
        status: dict[str, Any] = {"startTime": _now(), "active": 1, "failed": 0}
        attempt = 0
        while True:
            await self._job_status(namespace, name, status)
            if indexed:
                code = await self._run_nodes(
                    namespace, name, job["spec"]["template"], nodes, attempt,
                    {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                     "batch.kubernetes.io/job-name": name})
            else:
                code, _ = await self._run_pod(namespace, job, attempt)
            if code == 0:
                status.update(active=0, succeeded=1, completionTime=_now(), conditions=[
                    {"type": "SuccessCriteriaMet", "status": "True",
                     "reason": "CompletionsReached"},
                    {"type": "Complete", "status": "True", "reason": "CompletionsReached"}])
                break
            status["failed"] += nodes  # node 0's peers fail with it (a broken collective)
            reason = ("PodFailurePolicy" if code in fail_codes else
                      "BackoffLimitExceeded" if status["failed"] > limit else None)
            if reason:
                status.update(active=0, conditions=[
                    {"type": "FailureTarget", "status": "True", "reason": reason},
                    {"type": "Failed", "status": "True", "reason": reason,
                     "message": f"pod exited with code {code}"}])
                break
            attempt += 1
        await self._job_status(namespace, name, status)

    # ----------------------------------------------------------------- JobSets

    async def _run_jobset(self, namespace: str, obj: dict[str, Any]) -> None:
        """A JobSet, or a TrainJob run as the JobSet its runtime would make of it."""
        kind = obj["kind"]
        jobset = obj if kind == "JobSet" else trainjob_as_jobset(obj)
        [rjob] = jobset["spec"]["replicatedJobs"]
        job_spec = rjob["template"]["spec"]
        policy = jobset["spec"].get("failurePolicy") or {}
        fail_reasons = {reason for rule in policy.get("rules", [])
                        if rule["action"] == "FailJobSet"
                        for reason in rule.get("onJobFailureReasons", [])}
        fail_codes = {code for rule in (job_spec.get("podFailurePolicy") or {}).get("rules", [])
                      if rule["action"] == "FailJob" and "onExitCodes" in rule
                      for code in rule["onExitCodes"]["values"]}
        children = {"name": rjob["name"], "ready": 0, "succeeded": 0, "failed": 0,
                    "suspended": 0, "active": 1}
        status: dict[str, Any] = {"restarts": 0, "replicatedJobsStatus": [children]}
        if kind == "TrainJob":  # its status has no restarts, and names the children jobsStatus
            status = {"jobsStatus": [children]}
        attempt = 0
        while True:
            await self._gang_status(namespace, obj, status)
            code = await self._run_nodes(
                namespace, f"{jobset['metadata']['name']}-{rjob['name']}-0",
                job_spec["template"], job_spec.get("completions", 1), attempt,
                {JOBSET_NAME: jobset["metadata"]["name"]})
            children["active"] = 0
            if code == 0:
                children["succeeded"] = 1
                status["conditions"] = [_condition(
                    "Completed" if kind == "JobSet" else "Complete", "AllJobsCompleted",
                    "jobset completed successfully")]
                break
            reason = "PodFailurePolicy" if code in fail_codes else "BackoffLimitExceeded"
            if reason in fail_reasons:
                children["failed"] = 1
                status["conditions"] = [_condition("Failed", "FailedJobs",
                                                   f"a child job failed: {reason}")]
                break
            if attempt >= policy.get("maxRestarts", 0):
                children["failed"] = 1
                status["conditions"] = [_condition(
                    "Failed", "ReachedMaxRestarts",
                    "jobset failed due to reaching max number of restarts")]
                break
            attempt += 1
            if kind == "JobSet":
                status["restarts"] = attempt
            children["active"] = 1
        await self._gang_status(namespace, obj, status)

    async def _gang_status(self, namespace: str, obj: dict[str, Any],
                           status: dict[str, Any]) -> None:
        await self.client.patch(obj["apiVersion"], obj["kind"], namespace,
                                obj["metadata"]["name"], {"status": dict(status)},
                                subresource="status")

    async def _run_nodes(self, namespace: str, prefix: str, template: dict[str, Any],
                         nodes: int, attempt: int, labels: dict[str, str]) -> int:
        """One attempt of a gang: a pod per node (PREFIX-INDEX-ATTEMPT); node 0 runs its
        torchrun command as a world of one, the others end as it does."""
        container = template["spec"]["containers"][0]
        pods = []
        for index in range(nodes):
            pod_name = f"{prefix}-{index}-{attempt}"
            pod_labels = {**template["metadata"].get("labels", {}), **labels,
                          COMPLETION_INDEX: str(index)}
            await self.client.create({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": pod_labels,
                             "annotations": {COMPLETION_INDEX: str(index)}},
                "spec": template["spec"]})
            await self.client.patch("v1", "Pod", namespace, pod_name,
                                    {"status": {"phase": "Running"}}, subresource="status")
            pods.append(pod_name)
        code, message = await self._execute(namespace, pods[0], template["spec"],
                                            {**container, "command": world_of_one(container)})
        for index, pod_name in enumerate(pods):
            terminated: dict[str, Any] = {"exitCode": code, "finishedAt": _now()}
            if message and index == 0:
                terminated["message"] = message
            await self.client.patch("v1", "Pod", namespace, pod_name, {"status": {
                "phase": "Succeeded" if code == 0 else "Failed",
                "containerStatuses": [{"name": container["name"], "state": {
                    "terminated": terminated}}]}}, subresource="status")
        return code

    async def _job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self.client.patch("batch/v1", "Job", namespace, name, {"status": dict(status)},
                                subresource="status")

    async def _run_pod(self, namespace: str, job: dict[str, Any], attempt: int) -> tuple[int, str]:
        template = job["spec"]["template"]
        container = template["spec"]["containers"][0]
        pod_name = f"{job['metadata']['name']}-{attempt}"
        labels = {**template["metadata"].get("labels", {}),
                  "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                  "batch.kubernetes.io/job-name": job["metadata"]["name"]}
        await self.client.create({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace, "labels": labels},
            "spec": template["spec"], "status": {"phase": "Running"}})
        await self.client.patch("v1", "Pod", namespace, pod_name,
                                {"status": {"phase": "Running"}}, subresource="status")
        code, message = await self._execute(namespace, pod_name, template["spec"], container)
        terminated = {"exitCode": code, "finishedAt": _now()}
        if message:
            terminated["message"] = message
        await self.client.patch("v1", "Pod", namespace, pod_name, {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "containerStatuses": [{"name": container["name"], "state": {
                "terminated": terminated}}]}}, subresource="status")
        return code, message

    async def _mounts(self, namespace: str, pod_spec: dict, container: dict) -> dict[str, Path]:
        """Container path -> local folder, for every volume mount."""
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mapping = {}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                local = self.root / "pvc" / volume["persistentVolumeClaim"]["claimName"]
            elif "configMap" in volume:
                cm_name = volume["configMap"]["name"]
                local = self.root / "configmaps" / cm_name
                configmap = await self.client.get("v1", "ConfigMap", namespace, cm_name)
                local.mkdir(parents=True, exist_ok=True)
                for key, text in (configmap or {}).get("data", {}).items():
                    (local / key).write_text(text, encoding="utf-8")
            else:
                local = self.root / "emptydir" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            mapping[mount["mountPath"]] = local
        return mapping

    async def _execute(self, namespace: str, pod: str, pod_spec: dict,
                       container: dict) -> tuple[int, str]:
        mounts = await self._mounts(namespace, pod_spec, container)
        mounts.pop("/dev/shm", None)

        def local(value: str) -> str:
            for path, folder in sorted(mounts.items(), key=lambda m: -len(m[0])):
                if value == path or value.startswith(path + "/"):
                    return str(folder) + value[len(path):]
            return value

        command = [local(arg) for arg in container["command"]]
        if command[0] == "python":
            command[0] = sys.executable
        elif command[0] == "torchrun":
            command[:1] = [sys.executable, "-m", "torch.distributed.run"]
        termination = self.root / "termination" / pod
        termination.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "MTM_TERMINATION_LOG": str(termination),
               "OMP_NUM_THREADS": "1"}
        env.update({e["name"]: local(e["value"]) for e in container.get("env", []) if "value" in e})
        for fragment, text in self.hold.items():
            if fragment in pod:
                self.emulator.logs[(namespace, pod)] = text
                await self.released.wait()
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        key = (namespace, pod)
        self.emulator.logs[key] = ""
        try:
            assert process.stdout is not None
            async for line in process.stdout:
                self.emulator.logs[key] += line.decode(errors="replace")
            code = await process.wait()
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        message = termination.read_text() if termination.is_file() else ""
        if not message and code != 0:  # terminationMessagePolicy: FallbackToLogsOnError
            message = "\n".join(self.emulator.logs[key].splitlines()[-20:])
        return code, message


JOBSET_API = "jobset.x-k8s.io/v1alpha2"
GANGS = {"jobset": (JOBSET_API, "JobSet"),
         "kubeflow": ("trainer.kubeflow.org/v1alpha1", "TrainJob")}
JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def _condition(kind: str, reason: str, message: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastTransitionTime": _now()}


def world_of_one(container: dict[str, Any]) -> list[str]:
    """Node 0's torchrun command, run alone on this machine: one node, one process, rank 0,
    rendezvous on a free local port. Every other flag and the trainer's arguments are kept."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    local = {"nnodes": "1", "nproc-per-node": "1", "node-rank": "0",
             "master-addr": "127.0.0.1", "master-port": str(port)}
    out = []
    for arg in container["command"]:
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
        out.append(f"--{key}={local[key]}" if key in local else arg)
    return out


def trainjob_as_jobset(trainjob: dict[str, Any]) -> dict[str, Any]:
    """What a Kubeflow torch runtime (`torch-distributed`: one replicated Job `node`, container
    `node`, no failure policy, so no restarts) makes of a TrainJob: its trainer fields and the
    operator's runtime patch merged into a JobSet."""
    trainer = trainjob["spec"]["trainer"]
    [patch] = trainjob["spec"]["runtimePatches"]
    [rjob] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod_patch = rjob["template"]["spec"]["template"]
    [container_patch] = pod_patch["spec"]["containers"]
    container = {**container_patch, "image": trainer["image"], "command": trainer["command"],
                 "env": trainer.get("env", []), "resources": trainer.get("resourcesPerNode", {})}
    pod_spec = {**pod_patch["spec"], "containers": [container]}
    return {"metadata": trainjob["metadata"], "spec": {"replicatedJobs": [{
        "name": rjob["name"],
        "template": {"metadata": rjob["template"].get("metadata", {}), "spec": {
            "completions": trainer.get("numNodes", 1),
            "template": {"metadata": pod_patch.get("metadata", {}), "spec": pod_spec}}}}]}}
