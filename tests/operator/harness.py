"""The integration-test cluster: the emulator on a local port, the test kubelet, the real kopf
operator in-process (startable and stoppable, as a crash and restart), and helpers to wait.

    async with Cluster.start(tmp_path) as cluster:
        await cluster.start_operator()
        await cluster.apply(model)
        await cluster.wait(lambda: cluster.model("demo")["status"]["phase"] == "Ready")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
from kmock import Server
from multitask_operator.api.resource import API_VERSION, GROUP, KIND, PLURAL, VERSION
from multitask_operator.config import OperatorConfig
from multitask_operator.k8s.client import Client

from .emulator import Emulator
from .kubelet import Kubelet

NAMESPACE = "ml"
MODEL_RESOURCE = f"{GROUP}/{VERSION}/{PLURAL}"


class Cluster:
    def __init__(self, emulator: Emulator, url: str, root: Path):
        self.emulator, self.url, self.root = emulator, url, root
        self.client = Client(url)
        self.kubelet = Kubelet(self.client, emulator, root)
        self._kubelet_task: asyncio.Task | None = None
        self._operator: threading.Thread | None = None
        self._stop: threading.Event | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, root: Path, monkeypatch: Any, crds: frozenset[str] = frozenset()):
        """`crds`: optional runtimes whose CRDs the cluster has ("jobset", "kubeflow")."""
        emulator = Emulator(crds=frozenset(crds))
        async with emulator, Server(emulator) as server:
            url = str(server.url).rstrip("/")
            kubeconfig = root / "kubeconfig"
            kubeconfig.write_text(json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": url}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "users": [{"name": "test", "user": {}}]}))
            # The operator logs in as in a real cluster: kopf's kubeconfig login, then our client.
            monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
            cluster = cls(emulator, url, root)
            cluster._kubelet_task = asyncio.create_task(cluster.kubelet.run(NAMESPACE))
            try:
                yield cluster
            finally:
                await cluster.stop_operator()
                cluster._kubelet_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await cluster._kubelet_task
                await cluster.client.close()

    async def start_operator(self, config: OperatorConfig | None = None) -> None:
        """Run kopf in its own thread and event loop, as in its own process: when kopf stops it
        cancels every task of its loop that it did not see at start-up, which would take the
        test kubelet's running Jobs with it."""
        import multitask_operator.handlers  # noqa: F401  (registers the handlers)

        logging.getLogger("kopf").setLevel(logging.WARNING)
        stop = self._stop = threading.Event()
        memo = kopf.Memo(config=config or OperatorConfig(trainer_image="trainer:test"))
        self._operator = threading.Thread(target=lambda: asyncio.run(kopf.operator(
            clusterwide=True, standalone=True, memo=memo, stop_flag=stop)), daemon=True)
        self._operator.start()

    async def stop_operator(self) -> None:
        """Stop the operator; its in-memory state (caches, written statuses) goes with it."""
        if self._operator is None or self._stop is None:
            return
        self._stop.set()
        await asyncio.to_thread(self._operator.join, 30)
        self._operator = None

    async def apply(self, name: str, spec: dict[str, Any]) -> None:
        await self.client.create({"apiVersion": API_VERSION, "kind": KIND,
                                  "metadata": {"name": name, "namespace": NAMESPACE},
                                  "spec": spec})

    async def create(self, obj: dict[str, Any]) -> None:
        obj["metadata"].setdefault("namespace", NAMESPACE)
        await self.client.create(obj)

    async def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return await self.client.get(api_version, kind, NAMESPACE, name)

    async def model(self, name: str) -> dict[str, Any]:
        return await self.get(API_VERSION, KIND, name) or {}

    async def wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll the async `check` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            await asyncio.sleep(0.2)

    async def wait_phase(self, name: str, phases: set[str], timeout: float) -> dict[str, Any]:
        async def reached():
            model = await self.model(name)
            return model if (model.get("status") or {}).get("phase") in phases else None
        try:
            return await self.wait(reached, timeout, f"{name} to reach {sorted(phases)}")
        except AssertionError as err:
            status = (await self.model(name)).get("status")
            raise AssertionError(f"{err}; status: {json.dumps(status, indent=1)}") from None

    def events(self) -> list[dict[str, Any]]:
        return [dict(obj) for (resource, _, _), obj in self.emulator.objects.items()
                if resource.plural == "events" and not obj.deleted]

    def jobs_created(self, plural: str = "jobs") -> dict[str, int]:
        return {name: n for (p, name), n in self.emulator.created.items() if p == plural}
