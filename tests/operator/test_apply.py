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


async def test_turning_autoscaling_on_keeps_the_replica_count():
    """A Deployment applied with 3 replicas, then rendered without a count (an HPA owns it):
    the apply keeps the cluster's count instead of letting it fall to the default of 1."""
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "demo-inference", "namespace": "ml"},
                  "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "demo"}},
                           "template": {"metadata": {"labels": {"app": "demo"}},
                                        "spec": {"containers": [{"name": "tgi",
                                                                 "image": "tgi"}]}}}}
    emulator = Emulator()
    async with emulator, Server(emulator) as server:
        client = Client(str(server.url).rstrip("/"))
        try:
            await apply(client, copy.deepcopy(deployment))
            # The HPA scales it to 5 through the scale subresource (a plain update here).
            await client.patch("apps/v1", "Deployment", "ml", "demo-inference",
                               {"spec": {"replicas": 5}})
            autoscaled = copy.deepcopy(deployment)
            del autoscaled["spec"]["replicas"]
            await apply(client, autoscaled)
            current = await client.get("apps/v1", "Deployment", "ml", "demo-inference")
            assert current["spec"]["replicas"] == 5
        finally:
            await client.close()
