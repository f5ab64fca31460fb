"""Deletion always ends: a Service that is gone or in a terminating namespace counts as restored;
any other failure is retried with backoff, a Warning Event and the status naming the Service;
after the operator's finalizer timeout the finalizer is released with a Warning Event listing what
was left where. The API calls are a scripted client; the decisions are the operator's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from multitask_operator.config import OperatorConfig
from multitask_operator.k8s.client import ApiError
from multitask_operator.k8s.runner import RetryLater, Runtime, finalize_model, retry_delay
from multitask_operator.reconcile.cutover import CUTOVER_ANNOTATION, TAKEN_OVER_ANNOTATION

from . import factories as f


class ScriptedClient:
    """Answers each Service patch with the error scripted for it (None: success)."""

    def __init__(self, errors: dict[str, ApiError | None]) -> None:
        self.errors = errors
        self.patched: list[tuple[str, str, dict]] = []

    async def patch(self, api_version, kind, namespace, name, patch, subresource=None):
        self.patched.append((kind, name, patch))
        error = self.errors.get(name)
        if error is not None and kind == "Service":
            raise error
        return {}


def runtime(errors: dict[str, ApiError | None], monkeypatch, **config) -> tuple[Runtime, list]:
    client = ScriptedClient(errors)
    rt = Runtime(OperatorConfig(**config), client)  # type: ignore[arg-type]
    taken = {name: f.service(name, annotations={CUTOVER_ANNOTATION: f.cutover_record(name)},
                             selector={"gw": "1"}) for name in errors}
    observed = f.observed(services=taken,
                          annotations={TAKEN_OVER_ANNOTATION: ",".join(sorted(errors))})

    async def observe(body):
        return observed

    monkeypatch.setattr(rt.observer, "observe", observe)
    return rt, []


def body(deleted_seconds_ago: float) -> dict:
    when = datetime.now(UTC) - timedelta(seconds=deleted_seconds_ago)
    return {"metadata": {"name": "demo", "namespace": "ml", "uid": "uid-1",
                         "deletionTimestamp": when.strftime("%Y-%m-%dT%H:%M:%SZ")}}


async def test_gone_and_terminating_count_as_restored(monkeypatch):
    rt, events = runtime({
        "intent-svc": None,
        "topic-svc": ApiError(404, "NotFound", 'services "topic-svc" not found'),
        "other-svc": ApiError(403, "Forbidden", "unable to create new content in namespace ml "
                                                "because it is being terminated"),
    }, monkeypatch)
    await finalize_model(rt, body(1), events.append)  # returns: the finalizer is released
    assert [e.reason for e in events] == ["Restored"]
    assert events[0].message == "restored before deletion: intent-svc, other-svc, topic-svc"


async def test_a_forbidden_restore_is_retried_with_backoff_and_named(monkeypatch):
    rt, events = runtime({"intent-svc": ApiError(403, "Forbidden", "cannot patch services")},
                         monkeypatch)
    with pytest.raises(RetryLater) as later:
        await finalize_model(rt, body(30), events.append, retry=2)
    assert later.value.delay == retry_delay(2) == 20
    [warning] = events  # nothing was restored, so no Restored event
    assert warning.type == "Warning" and warning.reason == "RestoreFailed"
    assert "Service intent-svc: HTTP 403 Forbidden: cannot patch services" in warning.message
    status = [p for kind, _, p in rt.client.patched if kind == "MultiTaskModel" and "status" in p]
    assert "could not restore Service intent-svc" in status[-1]["status"]["message"]
    assert [retry_delay(n) for n in range(7)] == [5, 10, 20, 40, 60, 60, 60]


async def test_after_the_timeout_the_finalizer_is_released_with_what_was_left(monkeypatch):
    rt, events = runtime({"intent-svc": ApiError(403, "Forbidden", "denied by a webhook")},
                         monkeypatch, finalizer_timeout_seconds=600)
    await finalize_model(rt, body(601), events.append, retry=40)  # no RetryLater: released
    [warning] = events
    assert warning.reason == "FinalizerReleased"
    assert "gave up restoring after 600 s" in warning.message
    assert "Service intent-svc: HTTP 403 Forbidden: denied by a webhook" in warning.message


def test_the_timeout_is_an_operator_setting():
    config = OperatorConfig.from_env({"MTM_FINALIZER_TIMEOUT_SECONDS": "120"})
    assert config.finalizer_timeout_seconds == 120.0
    with pytest.raises(ValueError, match="MTM_FINALIZER_TIMEOUT_SECONDS='soon'"):
        OperatorConfig.from_env({"MTM_FINALIZER_TIMEOUT_SECONDS": "soon"})
