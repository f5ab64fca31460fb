"""kopf handlers: glue from kopf's events to the per-object loop in `k8s.runner`.

    mtm operator [--namespace NS ...] [--peering NAME]     # runs these (cli/operator_cmd.py)

Each MultiTaskModel gets one kopf daemon that runs its reconcile loop; watch events about the
object, its Jobs and its Deployments wake that loop. The delete handler (and the finalizer kopf
adds for it) restores every per-task Service before the object goes away. No decisions here:
they are in `reconcile/`, the API calls in `k8s/`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from .api.resource import GROUP, PLURAL, VERSION
from .config import OperatorConfig
from .k8s.client import Client
from .k8s.runner import RetryLater, Runtime, finalize_model, run_model
from .reconcile import Event
from .render.meta import MODEL_LABEL

MODEL = (GROUP, VERSION, PLURAL)


def _poster(body: Any):
    def post(event: Event) -> None:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    return post


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.level = logging.INFO  # Events for transitions, not for kopf's debug noise
    settings.persistence.finalizer = "multitask.ai/finalizer"


@kopf.on.login()
def login(settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo:
    info = (kopf.login_with_service_account(settings=settings, **kwargs)
            or kopf.login_with_kubeconfig(settings=settings, **kwargs))
    if info is None:
        raise kopf.LoginError("no credentials: not in a pod with a service account, and no "
                              "kubeconfig (KUBECONFIG or ~/.kube/config)")
    client = Client.from_connection(info)
    if getattr(memo, "runtime", None) is None:
        memo.runtime = Runtime(memo.get("config") or OperatorConfig.from_env(), client)
    else:  # re-authentication (a rotated token): same runtime, new credentials
        memo.runtime.client = memo.runtime.observer.client = client
    return info


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    if getattr(memo, "runtime", None) is not None:
        await memo.runtime.client.close()


@kopf.daemon(*MODEL, cancellation_timeout=5.0)
async def model_loop(body: kopf.Body, stopped: kopf.DaemonStopped, memo: Any,
                     logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any) -> None:
    await run_model(memo.runtime, body, stopped, _poster(body), logger)


@kopf.on.update(*MODEL)
@kopf.on.resume(*MODEL)
def model_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    memo.runtime.wake((namespace or "", name))


@kopf.on.event("batch", "v1", "jobs", labels={MODEL_LABEL: kopf.PRESENT})
@kopf.on.event("apps", "v1", "deployments", labels={MODEL_LABEL: kopf.PRESENT})
def owned_changed(namespace: str | None, labels: Mapping[str, str], memo: Any,
                  **_: Any) -> None:
    memo.runtime.wake((namespace or "", labels[MODEL_LABEL]))


@kopf.on.delete(*MODEL)
async def model_deleted(body: kopf.Body, memo: Any, retry: int, **_: Any) -> None:
    try:
        await finalize_model(memo.runtime, body, _poster(body), retry)
    except RetryLater as later:
        raise kopf.TemporaryError(str(later), delay=later.delay) from None
