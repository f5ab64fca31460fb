"""Run an aiohttp app the way `mtm gateway` and `mtm serve-model` do.

On uvloop when it is installed (the gateway extra installs it): the gateway is loop-bound, and
with uvloop its own overhead per request in benchmarks/gateway_overhead.py drops by roughly a
third compared with asyncio's default loop.
"""

from __future__ import annotations

import asyncio

from aiohttp import web


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(app: web.Application, host: str, port: int) -> None:
    # access_log=None: a log line per request would cost more than the gateway's own work;
    # the Prometheus metrics carry the same counts. handler_cancellation: when a client hangs
    # up, its handler is cancelled, which closes the upstream request and so stops the
    # generation nobody will read (aiohttp leaves handlers running by default).
    web.run_app(app, host=host, port=port, access_log=None, print=None, loop=new_loop(),
                handler_cancellation=True)
