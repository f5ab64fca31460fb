"""Which task a request is for: the path, the X-Task header, or the Host it was sent to.

A client of an old per-task Service `intent-svc` keeps calling `http://intent-svc/generate`;
once that Service points at the gateway pods, the Host header (`intent-svc`,
`intent-svc.ml`, `intent-svc.ml.svc.cluster.local:80`) is all that tells the task apart.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import errors
from .config import GatewayConfig, TaskRoute


def known(config: GatewayConfig) -> str:
    return ", ".join(sorted(config.tasks))


def lookup(config: GatewayConfig, name: str, how: str) -> TaskRoute:
    task = config.tasks.get(name)
    if task is None:
        raise errors.not_found(f"unknown task '{name}' ({how}); known tasks: {known(config)}")
    return task


def host_label(host: str | None) -> str | None:
    """First DNS label of a Host header, without port: `a.ns.svc:80` -> `a`."""
    if not host:
        return None
    if host.startswith("["):  # an IPv6 literal is never a Service name
        return None
    return host.split(":", 1)[0].split(".", 1)[0].lower() or None


def resolve(
    config: GatewayConfig, path_task: str | None, headers: Mapping[str, str]
) -> TaskRoute | None:
    """The task of a request, or None when nothing names one. An explicit name that is not a
    task (path or X-Task) is a 404; a Host that matches no old Service is simply no task."""
    if path_task is not None:
        return lookup(config, path_task, "from the path")
    header = headers.get("X-Task")
    if header:
        return lookup(config, header.strip(), "from the X-Task header")
    label = host_label(headers.get("Host"))
    if label:
        return config.by_service.get(label)
    return None


def require(
    config: GatewayConfig, path_task: str | None, headers: Mapping[str, str]
) -> TaskRoute:
    task = resolve(config, path_task, headers)
    if task is None:
        raise errors.not_found(
            "no task in the request: call /tasks/<task>/..., set the X-Task header, or call the "
            f"task's old Service name; known tasks: {known(config)}"
        )
    return task
