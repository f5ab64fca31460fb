"""Server-side apply through the operator's client, on the emulated API server: a field the
renderer stops producing is removed from the cluster; an unchanged object is not written again;
a drifted one is put back. Run: .venv/bin/python -m pytest tests/operator/test_apply.py"""

from __future__ import annotations

import copy

from kmock import Server
from multitask_operator.k8s.apply import apply
from multitask_operator.k8s.client import Client

from .emulator import Emulator

CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "demo-gateway-config", "namespace": "ml",
                          "labels": {"app": "demo"}, "annotations": {"old": "yes"}},
             "data": {"gateway.json": "{}", "legacy.json": "{}"}}


async def test_a_dropped_field_is_removed_and_an_unchanged_object_is_left_alone():
    emulator = Emulator()
    async with emulator, Server(emulator) as server:
        client = Client(str(server.url).rstrip("/"))
        try:
            assert await apply(client, copy.deepcopy(CONFIGMAP))  # created by the apply
            newer = copy.deepcopy(CONFIGMAP)
            del newer["metadata"]["annotations"]
            del newer["data"]["legacy.json"]
            assert await apply(client, newer)
            current = await client.get("v1", "ConfigMap", "ml", "demo-gateway-config")
            assert current["data"] == {"gateway.json": "{}"}
            assert "old" not in (current["metadata"].get("annotations") or {})
            assert current["metadata"]["labels"] == {"app": "demo"}

            writes = len(emulator.applied)
            assert not await apply(client, copy.deepcopy(newer))  # the same object: no write
            # Someone edits it behind the operator's back: the next apply puts it back.
            await client.patch("v1", "ConfigMap", "ml", "demo-gateway-config",
                               {"data": {"gateway.json": "tampered"}})
            assert await apply(client, copy.deepcopy(newer))
            current = await client.get("v1", "ConfigMap", "ml", "demo-gateway-config")
            assert current["data"] == {"gateway.json": "{}"}
            assert len(emulator.applied) == writes  # one manager, one object
            assert {call[3] for call in emulator.calls} >= {"patch", "get"}
        finally:
            await client.close()
