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
    return _resolve(config, path_task, headers)[0]


def _resolve(
    config: GatewayConfig, path_task: str | None, headers: Mapping[str, str]
) -> tuple[TaskRoute | None, str | None]:
    """The task and what named it: "path", "header", "host" or None."""
    label = host_label(headers.get("Host"))
    via = config.by_service.get(label) if label else None
    explicit, source = None, None
    if path_task is not None:
        explicit, source = lookup(config, path_task, "from the path"), "path"
    elif header := headers.get("X-Task"):
        explicit, source = lookup(config, header.strip(), "from the X-Task header"), "header"
    if explicit is None:
        return via, "host" if via is not None else None
    if via is not None and via is not explicit and not config.cross_task_access:
        raise cross_task(via, label, explicit)
    return explicit, source


def cross_task(via: TaskRoute, service: str | None, other: TaskRoute) -> errors.GatewayError:
    """A request that came through one task's old Service asks for another task. Each old
    Service stands for its task only (its clients were granted that one), unless the model's
    serving config allows cross-task access."""
    return errors.GatewayError(
        403,
        f"this request came through task '{via.name}''s Service '{service}', which serves that "
        f"task only; call task '{other.name}' through its own Service or the gateway's "
        "(spec.serving.crossTaskAccess: true allows it)",
        "forbidden",
    )


def for_model(
    config: GatewayConfig, model: str | None, path_task: str | None, headers: Mapping[str, str]
) -> TaskRoute:
    """The task of an OpenAI request. `model` selects the task it names (a task name, or the
    task's old Service name as an alias); otherwise the path, X-Task and Host decide as for
    every other endpoint, whatever `model` says (an old client keeps sending its old model id).
    A `model` naming one task while the path or X-Task names another is refused (400); one that
    arrives through another task's old Service is refused too (403) unless the config allows
    cross-task access: a request never reaches a task other than the one its URL or Service
    stands for."""
    named = None
    if model:
        named = config.tasks.get(model) or config.by_service.get(model)
    other, source = _resolve(config, path_task, headers)
    if named is not None and other is not None and named is not other:
        if source == "host":
            if not config.cross_task_access:
                raise cross_task(other, host_label(headers.get("Host")), named)
            other = named
        else:
            raise errors.bad_request(
                f"model '{model}' names task '{named.name}', but the request is for task "
                f"'{other.name}' (by its path or X-Task header); leave model out or make "
                "them agree",
                "model",
            )
    task = named or other
    if task is None:
        if model:
            raise errors.GatewayError(
                404, f"the model '{model}' does not exist: every task is a model; known: "
                f"{known(config)}", "model_not_found", "model",
            )
        raise errors.not_found(
            "no task in the request: set model to a task, call /tasks/<task>/v1/..., set the "
            f"X-Task header, or call the task's old Service name; known tasks: {known(config)}",
            "model",
        )
    return task


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
