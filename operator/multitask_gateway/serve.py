"""Run an aiohttp app the way `mtm gateway` and `mtm serve-model` do.

On uvloop when it is installed (the gateway extra installs it): the gateway is loop-bound, and
with uvloop its own overhead per request in benchmarks/gateway_overhead.py drops by roughly a
third compared with asyncio's default loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError


class OneLineBadRequests(logging.Filter):
    """A malformed HTTP request (garbage, an oversized header) is the client's problem: one
    warning line naming it, not aiohttp's traceback per request (a flood of them is a log DoS)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "malformed HTTP request refused with %s: %s"
            record.args = (error.code, " ".join(str(error.message).split())[:200])
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


_ONE_LINE = OneLineBadRequests()


def server_options(idle_timeout: float = 15.0) -> dict[str, Any]:
    """aiohttp server options of the gateway (for web.run_app or web.AppRunner)."""
    logger = logging.getLogger("aiohttp.server")
    if _ONE_LINE not in logger.filters:
        logger.addFilter(_ONE_LINE)
    # idle_timeout is aiohttp's keepalive_timeout, which aiohttp also applies from the moment a
    # connection opens: a connection that has not sent a whole request in that time (one
    # dribbling its headers) is closed, and so is a kept-alive one left idle that long.
    # access_log=None: a log line per request would cost more than the gateway's own work;
    # the Prometheus metrics carry the same counts. handler_cancellation: when a client hangs
    # up, its handler is cancelled, which closes the upstream request and so stops the
    # generation nobody will read (aiohttp leaves handlers running by default).
    return {"access_log": None, "handler_cancellation": True, "keepalive_timeout": idle_timeout}


def run(app: web.Application, host: str, port: int, idle_timeout: float = 15.0) -> None:
    web.run_app(app, host=host, port=port, print=None, loop=new_loop(),
                **server_options(idle_timeout))
