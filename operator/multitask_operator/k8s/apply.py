"""Carry out a reconcile `Outcome`: create, apply, patch and delete objects, patch the status.

Creation is idempotent by name: 409 Conflict means the object was created before (by this
operator before a restart) and counts as success. `Apply` is server-side apply under the
operator's field manager, so that a field the renderer stops producing is removed from the
cluster (a merge patch would leave it); it is skipped only when this process applied the very
same object before and the cluster still holds all of it, so an unchanged Deployment is not
written on every reconcile and a drifted one is put back. `Absent` deletes an object the spec no
longer wants, only if it is there and owned by the model.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.resource import API_VERSION, KIND
from ..reconcile import Absent, Apply, Create, Delete, Outcome, Patch
from .client import ApiError, Client
from .observe import status_patch


def contains(current: Any, wanted: Any) -> bool:
    """Whether `current` already holds every value of `wanted` (server defaults may be extra)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            contains(current.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(current, list) and len(current) == len(wanted)
                and all(contains(c, w) for c, w in zip(current, wanted, strict=True)))
    return current == wanted


async def create(client: Client, obj: dict) -> None:
    try:
        await client.create(obj)
    except ApiError as err:
        if err.status != 409:
            raise


async def apply(client: Client, obj: dict[str, Any]) -> bool:
    """Create or update `obj` (server-side apply); True if anything was written."""
    meta = obj["metadata"]
    key = (obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
    autoscaled = obj["kind"] == "Deployment" and "replicas" not in obj.get("spec", {})
    current = None
    if client.applied.get(key) == digest or autoscaled:
        current = await client.get(*key)
        if client.applied.get(key) == digest and current is not None and contains(current, obj):
            return False
    replicas = ((current or {}).get("spec") or {}).get("replicas")
    if autoscaled and replicas is not None:
        # An HorizontalPodAutoscaler owns the count. Leaving replicas out of an apply would
        # delete a count this manager set before (when autoscaling was off), and the
        # Deployment would drop to 1 replica until the HPA scales it back: keep the count the
        # cluster has (the HPA's choice), which changes nothing.
        obj = {**obj, "spec": {**obj["spec"], "replicas": replicas}}
    await client.apply(obj)
    client.applied[key] = digest
    return True


async def remove(client: Client, namespace: str, action: Absent) -> bool:
    """Delete the object of `action` if it exists and is owned by its model; True if deleted."""
    current = await client.get(action.api_version, action.kind, namespace, action.name)
    owners = ((current or {}).get("metadata") or {}).get("ownerReferences") or []
    if not any(ref.get("uid") == action.owner_uid for ref in owners):
        return False  # absent already, or someone else's object under the same name
    await client.delete(action.api_version, action.kind, namespace, action.name)
    return True


def restored_anyway(error: ApiError) -> bool:
    """A restore that cannot happen because there is nothing left to restore: the Service is
    gone, or its namespace is being deleted (with everything in it)."""
    return error.status == 404 or "being terminated" in error.message


async def restore_services(client: Client, namespace: str,
                           outcome: Outcome) -> tuple[list[str], list[str]]:
    """Carry out a finalize outcome action by action: (the Services restored, what could not
    be restored, one line each). A Service gone or in a terminating namespace counts as
    restored."""
    restored, failures = [], []
    for action in outcome.actions:
        if not isinstance(action, Patch):
            continue
        try:
            await client.patch(action.api_version, action.kind, namespace, action.name,
                               action.patch)
        except ApiError as err:
            if not restored_anyway(err):
                failures.append(f"{action.kind} {action.name}: {err}")
                continue
        if action.kind == "Service":
            restored.append(action.name)
    return restored, failures


async def carry_out(client: Client, namespace: str, name: str, old_status: dict[str, Any],
                    outcome: Outcome) -> None:
    for action in outcome.actions:
        if isinstance(action, Create):
            await create(client, action.obj)
        elif isinstance(action, Apply):
            await apply(client, action.obj)
        elif isinstance(action, Patch):
            await client.patch(action.api_version, action.kind, namespace, action.name,
                               action.patch)
        elif isinstance(action, Delete):
            await client.delete(action.api_version, action.kind, namespace, action.name)
        elif isinstance(action, Absent):
            await remove(client, namespace, action)
    if outcome.remove_annotations:
        await client.patch(API_VERSION, KIND, namespace, name, {
            "metadata": {"annotations": {k: None for k in outcome.remove_annotations}}})
    if outcome.status is not None:
        patch = status_patch(old_status, outcome.status)
        if patch is not None:
            await client.patch(API_VERSION, KIND, namespace, name, {"status": patch},
                               subresource="status")
