"""Follow the gateway's config file: a rollout step (a new weight) without a new process.

The operator keeps the config in a ConfigMap mounted as a volume; the kubelet replaces the file
when the ConfigMap changes. Changes other than rollout routes also change the pod template's
hash (render/gateway.py), so they arrive as new pods; a rollout step arrives here, within the
kubelet's sync period plus `interval`. A file that does not parse is logged and ignored: the
gateway keeps serving the config it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from .config import ConfigError, GatewayConfig, load_config

if TYPE_CHECKING:
    from .app import Gateway

log = logging.getLogger("multitask_gateway")


async def watch(path: Path, current: bytes, adopt: Callable[[GatewayConfig], None],
                interval: float = 2.0) -> None:
    """Call `adopt` with every new valid content of `path`, `current` being the content now."""
    last = current
    while True:
        await asyncio.sleep(interval)
        try:
            data = path.read_bytes()
        except OSError:
            continue  # the kubelet swaps the file with a symlink rename; try again next time
        if data == last:
            continue
        last = data
        try:
            config = load_config(path)
        except ConfigError as error:
            log.warning("%s; the gateway keeps serving its previous config", error)
            continue
        adopt(config)
        log.info("serving the new config %s", config.digest())


def follow(app: web.Application, gateway: Gateway, path: Path, current: bytes,
           interval: float = 2.0) -> None:
    """Run `watch` for `gateway` while `app` runs."""
    tasks: list[asyncio.Task[None]] = []

    async def start(_: web.Application) -> None:
        tasks.append(asyncio.create_task(watch(path, current, gateway.reload, interval)))

    async def stop(_: web.Application) -> None:
        for task in tasks:
            task.cancel()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
