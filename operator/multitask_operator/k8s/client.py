"""A thin async Kubernetes client: get, list, create, merge-patch, delete and a pod's log tail.

    client = Client.from_connection(kopf_connection_info)
    job = await client.get("batch/v1", "Job", "ml", "demo-prepare-1a2b3c4d")

Plain aiohttp rather than kubernetes_asyncio, kr8s or lightkube, on purpose: kopf already brings
aiohttp and does the login (service account or kubeconfig) whose result we reuse, the operator
needs five verbs on nine resource kinds, all JSON with merge patches, and nothing more to
install or to keep compatible with kopf's own aiohttp. The same code talks to a real API server
and to kmock's emulator in the tests.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
from typing import Any
from urllib.parse import quote

import aiohttp

from .. import __version__
from ..api.resource import API_VERSION, KIND, PLURAL

# (apiVersion, kind) -> plural; every kind here is namespaced.
PLURALS: dict[tuple[str, str], str] = {
    ("batch/v1", "Job"): "jobs",
    ("v1", "Pod"): "pods",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    (API_VERSION, KIND): PLURAL,
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobsets",  # spec.training.runtime jobset
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainjobs",  # runtime kubeflow
}
TIMEOUT = aiohttp.ClientTimeout(total=30)
USER_AGENT = f"multitask-operator/{__version__}"
FIELD_MANAGER = "multitask-operator"  # server-side apply: the owner of what it renders


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


def path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    try:
        plural = PLURALS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"the operator does not manage {kind} ({api_version})") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    out = f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{out}/{quote(name)}" if name else out


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _ssl_context(info: Any) -> ssl.SSLContext | bool:
    if getattr(info, "insecure", False):
        return False
    ca_data = getattr(info, "ca_data", None)
    if isinstance(ca_data, bytes):
        ca_data = ca_data.decode()
    if ca_data and "BEGIN CERTIFICATE" not in ca_data:
        ca_data = base64.b64decode(ca_data).decode()  # kubeconfig's certificate-authority-data
    context = ssl.create_default_context(cafile=getattr(info, "ca_path", None), cadata=ca_data)
    cert, key = getattr(info, "certificate_path", None), getattr(info, "private_key_path", None)
    # ssl loads client certificates from files only: data from a kubeconfig goes to temp files.
    if getattr(info, "certificate_data", None):
        cert = _temp_file(info.certificate_data)
    if getattr(info, "private_key_data", None):
        key = _temp_file(info.private_key_data)
    if cert:
        context.load_cert_chain(cert, key)
    return context


def _temp_file(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    if b"-----BEGIN" not in raw:
        raw = base64.b64decode(raw)
    handle = tempfile.NamedTemporaryFile(prefix="mtm-", suffix=".pem", delete=False)
    with handle:
        handle.write(raw)
    return handle.name


class Client:
    def __init__(self, server: str, headers: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | bool | None = None):
        self.server = server.rstrip("/")
        self._headers = headers or {}
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None
        # (apiVersion, kind, namespace, name) -> digest of the object last applied by this process
        self.applied: dict[tuple[str, str, str, str], str] = {}

    @classmethod
    def from_connection(cls, info: Any) -> Client:
        """From kopf's ConnectionInfo (the result of its login), so both use one identity."""
        headers = info.as_http_headers() if hasattr(info, "as_http_headers") else {}
        # Named in the API server's audit log (and told apart from kopf's own calls in tests).
        headers = {**headers, "User-Agent": USER_AGENT}
        secure = info.server.startswith("https")
        return cls(info.server, headers, _ssl_context(info) if secure else None)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(self, method: str, url: str, *, json: Any = None,
                       params: dict | None = None, content_type: str | None = None,
                       text: bool = False) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        async with self._http().request(method, self.server + url, json=json, params=params,
                                        headers=headers,
                                        ssl=self._ssl if self._ssl is not None else True,
                                        ) as response:
            if response.status >= 400:
                try:
                    body = await response.json(content_type=None)
                except (aiohttp.ContentTypeError, ValueError):
                    body = {}
                body = body if isinstance(body, dict) else {}
                raise ApiError(response.status, str(body.get("reason") or response.reason),
                               str(body.get("message") or ""))
            return await response.text() if text else await response.json(content_type=None)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return await self._request("GET", path(api_version, kind, namespace, name))
        except ApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str,
                   labels: dict[str, str] | None = None) -> list[dict]:
        params = {"labelSelector": selector(labels)} if labels else None
        result = await self._request("GET", path(api_version, kind, namespace), params=params)
        return list(result.get("items") or [])

    async def create(self, obj: dict) -> dict:
        meta = obj["metadata"]
        return await self._request(
            "POST", path(obj["apiVersion"], obj["kind"], meta["namespace"]), json=obj)

    async def patch(self, api_version: str, kind: str, namespace: str, name: str, patch: dict,
                    subresource: str | None = None) -> dict:
        url = path(api_version, kind, namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._request("PATCH", url, json=patch,
                                   content_type="application/merge-patch+json")

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of `obj` (created if missing) as the operator's field manager. The
        API server removes every field this manager set before and `obj` no longer has, which a
        merge patch never does; `force` takes over fields another manager changed, because the
        rendered objects are the operator's to define."""
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
        result: dict[str, Any] = await self._request(
            "PATCH", url, json=obj, params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content_type="application/apply-patch+yaml")  # JSON is YAML
        return result

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        # Background: the Job object goes at once (its name is free for a retry), its pods after.
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            await self._request("DELETE", path(api_version, kind, namespace, name), json=body)
        except ApiError as err:
            if err.status != 404:
                raise

    async def discover(self, group_version: str) -> dict | None:
        """The APIResourceList of `group_version` (e.g. jobset.x-k8s.io/v1alpha2), None if the
        cluster does not serve it. Discovery needs no RBAC rule: every user may read it."""
        try:
            return await self._request("GET", f"/apis/{group_version}")
        except ApiError as err:
            if err.status in (404, 503):  # 503: an aggregated API that is down
                return None
            raise

    async def log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        url = path("v1", "Pod", namespace, pod) + "/log"
        params = {"container": container, "tailLines": str(lines)}
        return await self._request("GET", url, params=params, text=True)
