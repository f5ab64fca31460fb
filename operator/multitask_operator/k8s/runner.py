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
from typing import Any

import aiohttp

from ..config import OperatorConfig
from ..reconcile import Event, Outcome, finalize, reconcile
from . import metrics
from .apply import carry_out
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
        self.observer = Observer(self.client)

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


async def finalize_model(rt: Runtime, body: Mapping[str, Any],
                         post_event: Callable[[Event], None]) -> None:
    """Restore every Service the model took over; raises on API errors so kopf retries."""
    meta = body["metadata"]
    obs = await rt.observer.observe(body)
    outcome = finalize(obs)
    await carry_out(rt.client, meta["namespace"], meta["name"], obs.status, outcome)
    for event in outcome.events:
        post_event(event)
    rt.written.pop(obs.uid, None)
    rt.phases.pop(obs.uid, None)
    metrics.set_phases(rt.phases)
