"""kmock's KubernetesEmulator with the API-server behaviour the operator relies on.

kmock 0.8 stores objects as merged JSON and nothing more. Added here:
- metadata.uid, resourceVersion, creationTimestamp on create; generation 1, bumped when a
  patch changes spec (what kopf and the operator's observedGeneration read);
- the status subresource: PATCH .../status changes only status, a PATCH of the object ignores
  status (so the operator's status and the test kubelet's Job status cannot clobber spec);
- equality-based label selectors (`k=v`, `k!=v`, `k`, `!k`) on list and watch;
- pod logs (GET .../pods/NAME/log) served from `logs`, which the test kubelet appends to;
- discovery of the MultiTaskModel CRD and the built-in kinds the operator uses, and of the
  JobSet / TrainJob CRDs when a test installs them (`crds`);
- a lock-free watch bus (`QueueBus`), so that stopping an operator mid-watch cannot hang it;
- a bounded request record (kmock keeps all, and matching scans them: quadratic).
Object creations are counted per (plural, name) in `created` for the no-duplicates checks.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import itertools
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, ResourceInfo, action
from multitask_operator.api.resource import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION

VERBS = {"list", "watch", "get", "create", "patch", "delete"}
BUILTINS = {
    "v1/pods": ("Pod", {"status", "log"}), "v1/services": ("Service", {"status"}),
    "v1/configmaps": ("ConfigMap", set()), "v1/persistentvolumeclaims": (
        "PersistentVolumeClaim", {"status"}),
    "v1/events": ("Event", set()), "batch/v1/jobs": ("Job", {"status"}),
    "apps/v1/deployments": ("Deployment", {"status"}),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", {"status"}),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", {"status"}),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", set()),
}
# Custom resources of the optional training runtimes, served only when a test installs them
# (`Emulator(crds={"jobset"})`), as a cluster serves them once their CRDs are applied.
RUNTIME_CRDS = {
    "jobset": ("jobset.x-k8s.io/v1alpha2/jobsets", "JobSet"),
    "kubeflow": ("trainer.kubeflow.org/v1alpha1/trainjobs", "TrainJob"),
}


def matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _labels(obj: Any) -> dict[str, str]:
    return dict(((obj or {}).get("metadata") or {}).get("labels") or {})


class QueueBus:
    """The watch-event bus, one queue per watcher and no locks.

    kmock's Bus shares an asyncio.Condition between writers and watchers; when a watcher's
    connection is cut (an operator stopped mid-watch) the condition can stay locked, and the
    emulator's global lock with it, so every later request hangs. Queues cannot deadlock."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()

    async def put(self, *items: Any) -> None:
        for queue in list(self._queues):
            for item in items:
                queue.put_nowait(item)

    async def __aiter__(self):
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)


@attrs.define(kw_only=True)
class Emulator(KubernetesEmulator):
    _buses: Any = attrs.field(factory=lambda: collections.defaultdict(QueueBus))
    logs: dict[tuple[str, str], str] = attrs.field(factory=dict)
    created: collections.Counter = attrs.field(factory=collections.Counter)
    # (User-Agent, API group, resource[/subresource], verb) of every request: what RBAC must allow.
    calls: set = attrs.field(factory=set)
    _versions: Any = attrs.field(factory=lambda: itertools.count(1))
    crds: frozenset = attrs.field(factory=frozenset)  # names from RUNTIME_CRDS to serve
    # Server-side apply: (resource, namespace, name, field manager) -> the object last applied.
    applied: dict = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resources[f"{GROUP}/{VERSION}/{PLURAL}"] = ResourceInfo(
            kind=KIND, singular=SINGULAR, shortnames=set(SHORT_NAMES), namespaced=True,
            verbs=VERBS, subresources={"status"})
        for key, (kind, subresources) in BUILTINS.items():
            self.resources[key] = ResourceInfo(kind=kind, namespaced=True, verbs=VERBS,
                                               subresources=subresources)
        for crd in self.crds:
            key, kind = RUNTIME_CRDS[crd]
            self.resources[key] = ResourceInfo(kind=kind, namespaced=True, verbs=VERBS,
                                               subresources={"status"})
        # kopf waits for namespaces to be discoverable even cluster-wide (it never lists them
        # then), and watches CRDs to notice resources that appear after it started.
        self.resources["v1/namespaces"] = ResourceInfo(kind="Namespace", namespaced=False,
                                                       verbs=VERBS)
        self.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = ResourceInfo(
            kind="CustomResourceDefinition", namespaced=False, verbs=VERBS)

    def _current(self, request: Any) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key in self.objects and not self.objects[key].deleted:
            return dict(self.objects[key])
        return None

    async def _handle(self, request):  # type: ignore[override]
        # kmock records every request and matches each new one by scanning that record, which
        # grows quadratic: a kubelet polling for minutes made requests time out. Only the
        # request being matched needs to be in it.
        del self._requests[:-16]
        self._record(request)
        invalid = _not_json(request.body) if request.resource is not None else None
        if invalid:
            # A real API server decodes bodies with a strict JSON parser: NaN and Infinity
            # (which Python writes and reads) are a 400, and the object is not changed.
            return aiohttp.web.json_response({
                "apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "code": 400, "reason": "BadRequest",
                "message": f"the request body is not valid JSON: {invalid}"}, status=400)
        if request.resource is not None and isinstance(request.data, dict):
            if "apply-patch" in request.headers.get("Content-Type", ""):
                self._server_side_apply(request)
            # kmock matches requests to reactions by identity, so the (frozen) request is
            # changed in place rather than replaced by a copy.
            object.__setattr__(request, "data", self._prepare(request))
        return await super()._handle(request)

    def _server_side_apply(self, request: Any) -> None:
        """What the API server does with an apply patch, as far as the operator relies on it:
        a missing object is created; otherwise every field the same field manager applied
        before and this object no longer has is removed (lists are atomic, as the operator's
        are), and the rest is merged."""
        manager = request.params.get("fieldManager")
        assert manager, "server-side apply needs a fieldManager"
        key = (request.resource, request.namespace, request.name, manager)
        previous = self.applied.get(key)
        self.applied[key] = copy.deepcopy(request.data)
        if self._current(request) is None:
            object.__setattr__(request, "action", action.CREATE)
            return
        if previous is not None:
            object.__setattr__(request, "data", _with_removals(previous, request.data))

    def _record(self, request: Any) -> None:
        # Discovery (no plural) is open to every authenticated user: no RBAC rule needed.
        if request.resource is None or request.action is None or not request.resource.plural:
            return
        verb = {"LIST": "list", "WATCH": "watch", "FETCH": "get", "CREATE": "create",
                "UPDATE": "patch", "DELETE": "delete"}[request.action.name]
        resource = request.resource.plural
        if request.subresource:
            resource = f"{resource}/{request.subresource}"
        user_agent = request.headers.get("User-Agent", "")
        self.calls.add((user_agent, request.resource.group or "", resource, verb))

    def _prepare(self, request: Any) -> dict[str, Any]:
        data = dict(request.data)
        meta = dict(data.get("metadata") or {})
        if request.action == action.CREATE:
            meta.update(uid=str(uuid.uuid4()), generation=1,
                        creationTimestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            meta.setdefault("namespace", request.namespace)
            if not meta.get("name") and meta.get("generateName"):  # kopf's Events
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            self.created[(request.resource.plural, meta.get("name"))] += 1
        elif request.action == action.UPDATE:
            if request.subresource == "status":
                return {"status": data.get("status"),
                        "metadata": {"resourceVersion": str(next(self._versions))}}
            data.pop("status", None)
            old = self._current(request) or {}
            if "spec" in data and _merged(old.get("spec"), data["spec"]) != old.get("spec"):
                meta["generation"] = int((old.get("metadata") or {}).get("generation", 1)) + 1
        else:
            return data
        meta["resourceVersion"] = str(next(self._versions))
        data["metadata"] = meta
        return data

    async def _serve_fetch(self, request):  # type: ignore[override]
        if request.subresource == "log":
            text = self.logs.get((request.namespace, request.name), "")
            tail = int(request.params.get("tailLines", "0") or 0)
            lines = text.splitlines()[-tail:] if tail else text.splitlines()
            return ("\n".join(lines) + "\n").encode()
        return await super()._serve_fetch(request)

    async def _serve_list(self, request):  # type: ignore[override]
        result = await super()._serve_list(request)
        wanted = request.params.get("labelSelector")
        result["items"] = [o for o in result["items"] if matches(_labels(o), wanted)]
        return result

    async def _serve_watch(self, request):  # type: ignore[override]
        wanted = request.params.get("labelSelector")
        async for event in super()._serve_watch(request):
            if isinstance(event, dict) and not matches(_labels(event.get("object")), wanted):
                continue
            yield event


def _with_removals(previous: Any, current: Any) -> Any:
    """`current` plus a None (merge-patch deletion) for every key `previous` had and it lacks."""
    if not isinstance(previous, dict) or not isinstance(current, dict):
        return current
    out = {key: _with_removals(previous.get(key), value) for key, value in current.items()}
    out.update({key: None for key in previous if key not in current})
    return out


def _not_json(body: Any) -> str | None:
    """What makes a request body invalid JSON for a strict parser (NaN, Infinity), or None."""
    if not body or not isinstance(body, bytes | str):
        return None

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        json.loads(body, parse_constant=refuse)
    except ValueError as err:
        return str(err)
    return None


def _merged(old: Any, patch: Any) -> Any:
    """`old` after an RFC 7386 merge patch (what the emulator stores)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merged(out.get(key), value)
    return out
