"""One MultiTaskModel's reconcile loop: observe, decide (the pure core), act, then wait.

    await run_model(runtime, body, stopped, post_event)   # kopf's daemon for the object

The loop runs a reconcile, then sleeps until the core's requeue delay passes, or until a watch
event about the object, one of its Jobs or one of its Deployments wakes it (`Runtime.wake`),
so a finished Job is acted on at once and a running one is looked at every 20 seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..api.resource import API_VERSION, KIND
from ..config import OperatorConfig
from ..reconcile import Event, Outcome, finalize, reconcile
from . import metrics
from .apply import carry_out, restore_services
from .client import ApiError, Client
from .observe import Observer

RESYNC_S = 300.0  # look again at an idle object now and then, in case a watch event was lost
ERROR_BACKOFF_S = 10.0

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Runtime:
    """What every handler shares: configuration, client, wake-up events, last statuses."""

    config: OperatorConfig
    client: Client
    observer: Observer = field(init=False)
    wakers: dict[Key, asyncio.Event] = field(default_factory=dict)
    # The status this process wrote last, by uid: the daemon's body may lag behind our own
    # patch, and deciding from an older status would repeat Events.
    written: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.observer = Observer(self.client, self.config.gateway_metrics_url)

    def waker(self, key: Key) -> asyncio.Event:
        return self.wakers.setdefault(key, asyncio.Event())

    def wake(self, key: Key) -> None:
        if key in self.wakers:
            self.wakers[key].set()


async def reconcile_once(rt: Runtime, body: Mapping[str, Any]) -> Outcome:
    started = time.monotonic()
    meta = body["metadata"]
    obs = await rt.observer.observe(body)
    written = rt.written.get(obs.uid)
    if written is not None and written.get("observedGeneration") == obs.generation:
        obs.status = written
    for job in obs.jobs:
        if job.finished and (job.name, job.finished) not in rt.observer.timed:
            rt.observer.timed.add((job.name, job.finished))
            metrics.job_finished(job.step, job.started, job.finished)
    outcome = reconcile(obs, rt.config)
    await carry_out(rt.client, meta["namespace"], meta["name"], obs.status, outcome)
    if outcome.status is not None:
        rt.written[obs.uid] = outcome.status
        rt.phases[obs.uid] = outcome.status.get("phase", "Pending")
        metrics.set_phases(rt.phases)
    metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
    metrics.RECONCILES.labels("ok").inc()
    return outcome


async def run_model(rt: Runtime, body: Mapping[str, Any], stopped: Any,
                    post_event: Callable[[Event], None],
                    logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    waker = rt.waker(key)
    try:
        while not stopped:
            waker.clear()
            try:
                outcome = await reconcile_once(rt, body)
            except (TimeoutError, ApiError, aiohttp.ClientError) as err:
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels(type(err).__name__).inc()
                logger.warning("reconcile failed, retrying in %.0f s: %s", ERROR_BACKOFF_S, err)
                delay = ERROR_BACKOFF_S
            except Exception as err:  # a bug: keep the loop (and the other models) alive
                metrics.RECONCILES.labels("error").inc()
                metrics.ERRORS.labels(type(err).__name__).inc()
                logger.exception("reconcile crashed, retrying in %.0f s", ERROR_BACKOFF_S)
                delay = ERROR_BACKOFF_S
            else:
                for event in outcome.events:
                    post_event(event)
                delay = outcome.requeue_after or RESYNC_S
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(waker.wait(), timeout=delay)
    finally:
        rt.wakers.pop(key, None)


class RetryLater(Exception):
    """Deletion must be tried again in `delay` seconds (the kopf layer turns it into a
    kopf.TemporaryError)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


def retry_delay(retry: int) -> float:
    """Backoff between failed restores: 5, 10, 20, 40, then every 60 seconds."""
    return float(min(60, 5 * 2 ** min(retry, 4)))


def seconds_since(timestamp: str | None, now: datetime | None = None) -> float:
    if not timestamp:
        return 0.0
    then = datetime.strptime(timestamp[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return ((now or datetime.now(UTC)) - then).total_seconds()


async def finalize_model(rt: Runtime, body: Mapping[str, Any],
                         post_event: Callable[[Event], None], retry: int = 0) -> None:
    """Restore every Service the model took over, then let the object go. A Service that is gone
    (or whose namespace is being deleted) counts as restored; any other failure is retried with
    backoff (RetryLater), a Warning Event and the status naming the Service and the error,
    until `finalizer_timeout_seconds` after the deletion, when the finalizer is released anyway
    with a Warning Event listing what was left where."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    obs = await rt.observer.observe(body)
    outcome = finalize(obs)
    restored, failures = await restore_services(rt.client, namespace, outcome)
    if restored:
        post_event(Event("Normal", "Restored", "restored before deletion: "
                         + ", ".join(restored)))
    if failures:
        left = "; ".join(failures)
        timeout = rt.config.finalizer_timeout_seconds
        if seconds_since(meta.get("deletionTimestamp")) >= timeout:
            post_event(Event("Warning", "FinalizerReleased",
                             f"gave up restoring after {timeout:g} s and let the model go; left "
                             f"on its gateway, which is deleted with it: {left}"))
        else:
            delay = retry_delay(retry)
            message = (f"deleting: could not restore {left}; retrying in {delay:g} s (the "
                       f"finalizer is released {timeout:g} s after the deletion)")
            post_event(Event("Warning", "RestoreFailed", message))
            with contextlib.suppress(ApiError):
                await rt.client.patch(API_VERSION, KIND, namespace, name,
                                      {"status": {"message": message}}, subresource="status")
            raise RetryLater(message, delay)
    rt.written.pop(obs.uid, None)
    rt.phases.pop(obs.uid, None)
    metrics.set_phases(rt.phases)
