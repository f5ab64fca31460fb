"""Reading the gateway's configuration: the task table the operator renders into a ConfigMap.

The model itself is `multitask_operator.api.gateway_config.GatewayConfig`, shared with the
operator's renderer (which builds it): one definition of the fields, the DNS-1123 rule, the
task types and the limit defaults. Here: reading a file as the spec files are read (size cap,
UTF-8, bounded JSON) and turning a validation error into one sentence that names the file and
the field, because a hand-written config (`mtm gateway --config`) is a supported use.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from multitask_operator.api.gateway_config import GatewayConfig, Limits, TaskRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from . import jsonsafe

__all__ = ["ConfigError", "GatewayConfig", "Limits", "TaskRoute", "config_from_export",
           "load_config", "parse_config"]


class ConfigError(ValueError):
    """A gateway config that cannot be used; the message names the file and field."""


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier() and len(part) <= 80:
            out += f".{part}" if out else part
        else:  # a user's typo can be anything, newlines included: quoted, cut, one line
            out += f"[{json.dumps(str(part)[:80])}]"
    return out or "the config"


def _fields(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or name for name, f in model.model_fields.items())


def describe(error: ErrorDetails) -> str:
    """One pydantic error as one sentence: `tasks[1].type must be classification or ...`."""
    loc = list(error["loc"])
    kind, value = error["type"], error.get("input")
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == "mtm_config":
        loc += ctx["field"].split(".")
        return f"{_path(tuple(loc))}{ctx['separator']}{ctx['message']}"
    path = _path(tuple(loc))
    shown = json.dumps(value)[:80] if _jsonable(value) else repr(value)[:80]
    if kind == "extra_forbidden":
        if loc[:1] == ["tasks"]:
            return f"{path} is not a task field; accepted: {sorted(_fields(TaskRoute).split(', '))}"
        if loc[:1] == ["limits"]:
            return f"{path} is not a limit; accepted: {_fields(Limits)}"
        return f"{path} is not a config field; accepted: {_fields(GatewayConfig)}"
    if loc[:1] == ["limits"] and len(loc) == 2:
        return f"{path} must be a positive number, got {shown}"
    if kind == "string_pattern_mismatch":
        return f"{path} {value!r} is not a DNS-1123 label (a-z, 0-9 and -)"
    if kind == "enum":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"{path} must be {expected}, got {shown}"
    if kind == "too_short" and loc == ["tasks"]:
        return "tasks must be a non-empty list of tasks"
    if kind == "missing":
        return f"{path} is required"
    if kind == "string_type":
        return f"{path} must be a string, got {shown}"
    if kind == "bool_type":
        return f"{path} must be true or false, got {shown}"
    return f"{path}: {error['msg']}"


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def parse_config(raw: Any, source: str = "config") -> GatewayConfig:
    """A GatewayConfig from decoded JSON; errors read `SOURCE: tasks[1].type must be ...`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a JSON object, got "
                          f"{json.dumps(raw)[:80] if _jsonable(raw) else type(raw).__name__}")
    try:
        return GatewayConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe(error.errors(include_url=False)[0])}") from None


MAX_CONFIG_BYTES = 1 << 20  # a ConfigMap holds at most 1 MiB


def load_config(path: str | Path) -> GatewayConfig:
    """Read as the spec files are: one line per problem, naming the file, never a traceback."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: the gateway config is {size} bytes; at most "
                              f"{MAX_CONFIG_BYTES} (1 MiB, a ConfigMap's limit)")
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the gateway config: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start}"
        ) from None
    try:
        raw = jsonsafe.loads(text)
        jsonsafe.check_tree(raw)
    except jsonsafe.JsonProblem as problem:
        where = f"{problem.path}: " if problem.path else "the config "
        raise ConfigError(f"{path}: {where}{problem.message}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    return parse_config(raw, str(path))


def config_from_export(directory: str | Path, model: str = "model") -> GatewayConfig:
    """A config for the model exported to `directory` (its tasks.json and prompt_format.json,
    written by the trainer's export step): what `mtm gateway --config EXPORT_DIR` and the local
    runner use, with default limits and no old Service names."""
    directory = Path(directory)
    try:
        tasks = json.loads((directory / "tasks.json").read_text(encoding="utf-8"))["tasks"]
        fmt = json.loads((directory / "prompt_format.json").read_text(encoding="utf-8"))
    except (OSError, KeyError, json.JSONDecodeError) as error:
        raise ConfigError(
            f"{directory}: not a model export (needs tasks.json and prompt_format.json): {error}"
        ) from None
    cleaned = [{k: v for k, v in task.items() if v is not None} for task in tasks]
    for task in cleaned:
        if task.get("type") == "generation":
            task.pop("labels", None)
    raw = {"model": model, "promptFormat": fmt, "tasks": cleaned}
    return parse_config(raw, str(directory / "tasks.json"))
