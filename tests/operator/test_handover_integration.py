"""A handover end to end: the real operator (kopf, emulated API server, test kubelet) and a real
gateway process in front of real upstream processes (the unified model's stand-in and two old
per-task services), under a steady load through the tasks' Services.

The old sentiment service agrees with the unified model: its task goes shadow -> canary 50% ->
promoted. The old intent service is told to disagree on every other request once its task is
at canary 50%: the task is rolled back and its Service restored. Every client request must get
a 2xx answer through every step change and the rollback.

The test plays the parts of the cluster that the emulator has no process for: kube-proxy (a
request to a Service goes to the pods its selector picks now: the gateway, or the old pods),
the kubelet's ConfigMap volume (the gateway's config file follows the ConfigMap) and cluster
DNS (processes/gateway.py). MTM_HANDOVER_TIMELINE=FILE writes the timeline it observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from multitask_operator.config import OperatorConfig
from multitask_operator.render.meta import selector_labels

from .harness import NAMESPACE, Cluster
from .test_operator_integration import assert_rbac_covers
from .test_serving_scale import finished_training

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
PROCESSES = Path(__file__).parent / "processes"
WORDS = {"sentiment": ["great", "awful"], "intent": ["refund", "deliver", "login"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_process(args: list[str], root: Path, name: str) -> subprocess.Popen:
    log = open(root / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=log,
                            text=True, cwd=Path(__file__).parents[2])


async def backend(root: Path, name: str, *args: str) -> tuple[subprocess.Popen, int]:
    process = await start_process([str(PROCESSES / "backend.py"), *args], root, name)
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 30)
    return process, int(line)


async def per_task_services(cluster: Cluster) -> None:
    """Today's per-task Services with a ready pod each (restores need a ready endpoint)."""
    for task in ("sentiment", "intent"):
        await cluster.create({"apiVersion": "v1", "kind": "Service",
                              "metadata": {"name": f"{task}-svc", "annotations": {
                                  "multitask.ai/takeover-by": "demo"}},
                              "spec": {"selector": {"app": f"{task}-model"},
                                       "ports": [{"name": "http", "port": 80,
                                                  "targetPort": 8000}]}})
        await cluster.create({"apiVersion": "v1", "kind": "Pod",
                              "metadata": {"name": f"{task}-model-0",
                                           "labels": {"app": f"{task}-model"}},
                              "spec": {"containers": [{"name": "server", "image": "tgi"}]}})
        await cluster.client.patch("v1", "Pod", NAMESPACE, f"{task}-model-0", {"status": {
            "phase": "Running", "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}]}}, subresource="status")


class Load:
    """Clients calling each task's Service, routed as kube-proxy would by its selector now."""

    def __init__(self, cluster: Cluster, gateway: int, old: dict[str, int]):
        self.cluster, self.gateway, self.old = cluster, gateway, old
        self.selectors: dict[str, dict] = {}
        self.sent = 0
        self.failed: list[str] = []
        self.by_side = {"gateway": 0, "old pods": 0}

    async def follow_services(self) -> None:
        while True:
            for task in self.old:
                svc = await self.cluster.get("v1", "Service", f"{task}-svc")
                self.selectors[task] = svc["spec"]["selector"]
            await asyncio.sleep(0.05)

    async def client(self, task: str, session: aiohttp.ClientSession) -> None:
        n = 0
        while True:
            n += 1
            on_gateway = self.selectors.get(task, {}).get(
                "app.kubernetes.io/component") == "gateway"
            port = self.gateway if on_gateway else self.old[task]
            self.by_side["gateway" if on_gateway else "old pods"] += 1
            word = WORDS[task][n % len(WORDS[task])]
            body = {"inputs": f"item {n}: my order {word}", "parameters": {"max_new_tokens": 4}}
            self.sent += 1
            try:
                async with session.post(f"http://127.0.0.1:{port}/generate", json=body,
                                        headers={"Host": f"{task}-svc.{NAMESPACE}.svc"}) as r:
                    if r.status >= 300:
                        self.failed.append(f"{task} -> {r.status}: {await r.text()}")
            except aiohttp.ClientError as error:
                self.failed.append(f"{task} -> {error!r}")
            await asyncio.sleep(0.04)


async def project_config(cluster: Cluster, path: Path) -> None:
    """The kubelet's ConfigMap volume: the file follows the ConfigMap (atomically)."""
    while True:
        cm = await cluster.get("v1", "ConfigMap", "demo-gateway-config")
        if cm is not None:
            text = cm["data"]["gateway.json"]
            if not path.exists() or path.read_text() != text:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(text)
                tmp.replace(path)
        await asyncio.sleep(0.1)


async def test_a_promotion_a_rollback_and_no_dropped_request(tmp_path, monkeypatch,
                                                             spec_factory):
    spec = spec_factory()
    spec["tasks"] = spec["tasks"][:2]  # sentiment and intent, both with their old Service
    spec["serving"]["rollout"] = {"strategy": "Canary", "shadowFirst": True, "steps": [50, 100],
                                  "intervalSeconds": 3, "minRequests": 20,
                                  "agreementFloor": 0.9, "errorCeiling": 0.05}
    processes: list[subprocess.Popen] = []
    tasks: list[asyncio.Task] = []
    try:
        unified_proc, unified = await backend(tmp_path, "unified")
        old_sentiment_proc, old_sentiment = await backend(tmp_path, "old-sentiment")
        old_intent_proc, old_intent = await backend(tmp_path, "old-intent")
        processes += [unified_proc, old_sentiment_proc, old_intent_proc]
        gateway_port = free_port()
        config_path = tmp_path / "gateway.json"
        async with Cluster.start(tmp_path, monkeypatch) as cluster:
            await per_task_services(cluster)
            await finished_training(cluster, "demo", spec)
            await cluster.start_operator(OperatorConfig(
                trainer_image="trainer:test",
                gateway_metrics_url=f"http://{{ip}}:{gateway_port}/metrics"))
            await cluster.apply("demo", spec)
            tasks.append(asyncio.create_task(project_config(cluster, config_path)))
            async def config_written():
                return config_path.exists()
            await cluster.wait(config_written, 60, "the gateway ConfigMap")

            processes.append(await start_process([
                str(PROCESSES / "gateway.py"),
                "--host", f"demo-old-sentiment.{NAMESPACE}.svc={old_sentiment}",
                "--host", f"demo-old-intent.{NAMESPACE}.svc={old_intent}", "--",
                "--config", str(config_path), "--upstream", f"http://127.0.0.1:{unified}",
                "--host", "127.0.0.1", "--port", str(gateway_port)], tmp_path, "gateway"))
            async with aiohttp.ClientSession() as session:
                async def gateway_up():
                    with contextlib.suppress(aiohttp.ClientError):
                        async with session.get(f"http://127.0.0.1:{gateway_port}/livez") as r:
                            return r.status == 200
                await cluster.wait(gateway_up, 30, "the gateway process")
                # The gateway Deployment's pod, ready, at the process's address.
                await cluster.create({"apiVersion": "v1", "kind": "Pod", "metadata": {
                    "name": "demo-gateway-0", "labels": selector_labels("demo", "gateway")},
                    "spec": {"containers": [{"name": "gateway", "image": "gateway"}]}})
                await cluster.client.patch("v1", "Pod", NAMESPACE, "demo-gateway-0", {
                    "status": {"phase": "Running", "podIP": "127.0.0.1",
                               "conditions": [{"type": "Ready", "status": "True"}]}},
                    subresource="status")

                load = Load(cluster, gateway_port, {"sentiment": old_sentiment,
                                                    "intent": old_intent})
                tasks.append(asyncio.create_task(load.follow_services()))
                tasks += [asyncio.create_task(load.client(t, session)) for t in load.old]

                timeline: list[dict] = []
                start = time.monotonic()
                told = False

                async def settled():
                    nonlocal told
                    model = await cluster.model("demo")
                    rows = {r["name"]: r for r in (model.get("status") or {}).get("tasks", [])}
                    for name, row in rows.items():
                        rollout = row.get("rollout") or {}
                        entry = {"t": round(time.monotonic() - start, 1), "task": name,
                                 **{k: rollout.get(k) for k in ("state", "weight", "requests",
                                                                "agreement")}}
                        last = next((e for e in reversed(timeline) if e["task"] == name), None)
                        if last is None or (last["state"], last["weight"]) != (
                                entry["state"], entry["weight"]):
                            timeline.append(entry)
                    states = {n: (r.get("rollout") or {}).get("state") for n, r in rows.items()}
                    if states.get("intent") == "Canary" and not told:
                        told = True  # the old intent service turns against the unified model
                        async with session.post(
                                f"http://127.0.0.1:{old_intent}/control/disagree") as r:
                            assert r.status == 200
                    return states == {"sentiment": "Promoted", "intent": "RolledBack"}
                await cluster.wait(settled, 150, "sentiment promoted and intent rolled back")

                # The old backend's Service of the promoted task goes once the gateway dropped
                # its route; the rolled-back task's stays (connections to the gateway still
                # reach its old pods).
                async def old_sentiment_gone():
                    return await cluster.get("v1", "Service", "demo-old-sentiment") is None
                await cluster.wait(old_sentiment_gone, 30, "demo-old-sentiment to be deleted")
                assert await cluster.get("v1", "Service", "demo-old-intent") is not None
                await asyncio.sleep(1.0)  # more load after the last change
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                tasks.clear()

                model = await cluster.model("demo")
                rows = {r["name"]: r for r in model["status"]["tasks"]}
                assert rows["sentiment"]["servedBy"] == "unified"
                intent = rows["intent"]["rollout"]
                assert "agreement" in intent["reason"] and intent["weight"] == 0
                assert intent["reason"].startswith("agreement") and intent["agreement"] < 0.9
                assert [(e["state"], e["weight"]) for e in timeline if e["task"] == "intent"][
                    -2:] == [("Canary", 50), ("RolledBack", 0)]
                sentiment_svc = await cluster.get("v1", "Service", "sentiment-svc")
                assert sentiment_svc["spec"]["selector"]["app.kubernetes.io/component"] == (
                    "gateway")
                intent_svc = await cluster.get("v1", "Service", "intent-svc")
                assert intent_svc["spec"]["selector"] == {"app": "intent-model"}
                reasons = [e.get("reason") for e in cluster.events()]
                assert {"RolloutStep", "RolloutPromoted", "RolledBack"} <= set(reasons)
                steps = [e for e in timeline if e["task"] == "sentiment"]
                assert [(e["state"], e["weight"]) for e in steps][-3:] == [
                    ("Shadow", 0), ("Canary", 50), ("Promoted", 100)]

                async with session.get(f"http://127.0.0.1:{gateway_port}/metrics") as r:
                    metrics = await r.text()
                report = {"timeline": timeline, "requests": load.sent,
                          "non_2xx": len(load.failed), "by_side": load.by_side,
                          "rollout_metrics": [line for line in metrics.splitlines()
                                              if line.startswith("mtm_gateway_rollout_")
                                              and "_bucket" not in line]}
                if os.environ.get("MTM_HANDOVER_TIMELINE"):
                    Path(os.environ["MTM_HANDOVER_TIMELINE"]).write_text(
                        json.dumps(report, indent=2))
                print(json.dumps({k: v for k, v in report.items() if k != "rollout_metrics"}))
                assert load.failed == [], load.failed[:5]
                assert load.sent > 100 and load.by_side["gateway"] > 50

            assert_rbac_covers(cluster)
            # Deleting the model gives the promoted task's Service back too.
            await cluster.client.delete("multitask.ai/v1alpha1", "MultiTaskModel", NAMESPACE,
                                        "demo")

            async def restored():
                svc = await cluster.get("v1", "Service", "sentiment-svc")
                return svc["spec"]["selector"] == {"app": "sentiment-model"}
            await cluster.wait(restored, 30, "sentiment-svc restored on deletion")
    finally:
        for task in tasks:
            task.cancel()
        for process in processes:
            process.terminate()
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
