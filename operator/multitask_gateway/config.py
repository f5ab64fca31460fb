"""The gateway's configuration: the task table the operator renders into a ConfigMap.

    {"model": "support-assistant", "revision": "1a2b3c4d", "servedModelName": "support-assistant",
     "promptFormat": {"prefix": "...", "suffix": "...", "source": "chat_template"},
     "limits": {"maxBodyBytes": 1048576, "maxNewTokens": 512, "defaultMaxNewTokens": 256,
                "maxConcurrencyPerTask": 64, "timeoutSeconds": 120},
     "tasks": [{"name": "intent", "type": "classification", "instruction": "...",
                "labels": ["refund", "other"], "adapter": "classification",
                "service": "intent-svc"}]}

`multitask_operator.render.gateway` writes it; `load_config` reads it and names the field of
any mistake, because a hand-written config (`mtm gateway --config`) is a supported use.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from multitask_operator.prompting import PLAIN, PromptFormat

from . import jsonsafe

TASK_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TASK_TYPES = ("classification", "generation")


class ConfigError(ValueError):
    """A gateway config that cannot be used; the message names the file and field."""


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 1 << 20
    max_new_tokens: int = 512  # requests asking for more are refused (422)
    default_max_new_tokens: int = 256  # used when a request does not say
    max_concurrency_per_task: int = 64  # more in flight for one task -> 429
    timeout_seconds: float = 120.0  # longest wait for the upstream's next byte
    # A client connection that has not sent a whole request this long after it opened (slow
    # headers), or after its last answer (idle keep-alive), is closed.
    idle_timeout_seconds: float = 15.0
    body_timeout_seconds: float = 30.0  # longest wait for a request's whole body -> 408

    WIRE = {
        "maxBodyBytes": "max_body_bytes",
        "maxNewTokens": "max_new_tokens",
        "defaultMaxNewTokens": "default_max_new_tokens",
        "maxConcurrencyPerTask": "max_concurrency_per_task",
        "timeoutSeconds": "timeout_seconds",
        "idleTimeoutSeconds": "idle_timeout_seconds",
        "bodyTimeoutSeconds": "body_timeout_seconds",
    }


@dataclass(frozen=True)
class TaskRoute:
    name: str
    type: str
    instruction: str
    labels: tuple[str, ...] = ()
    adapter: str | None = None
    service: str | None = None

    @property
    def classification(self) -> bool:
        return self.type == "classification"


@dataclass(frozen=True)
class GatewayConfig:
    tasks: dict[str, TaskRoute]
    prompt_format: PromptFormat = PLAIN
    limits: Limits = field(default_factory=Limits)
    model: str = "model"
    revision: str | None = None
    served_model_name: str | None = None  # vLLM's --served-model-name; default `model`
    # Whether a request that came through one task's old Service may ask for another task.
    cross_task_access: bool = False

    @cached_property
    def by_service(self) -> dict[str, TaskRoute]:
        """Old Service name -> task, for Host-header routing."""
        return {t.service: t for t in self.tasks.values() if t.service}


def _expect(where: str, value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    # bool is an int in Python; a limit of `true` is a mistake, not 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _tuple(kind)):
        raise ConfigError(f"{where} must be {what}, got {json.dumps(value)}")
    return value


def _tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _limits(where: str, raw: Any) -> Limits:
    _expect(where, raw, dict, "an object")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in Limits.WIRE:
            raise ConfigError(f"{where}.{key} is not a limit; accepted: {', '.join(Limits.WIRE)}")
        kind = (int, float) if key.endswith("TimeoutSeconds") or key == "timeoutSeconds" else int
        _expect(f"{where}.{key}", value, kind, "a positive number")
        if value <= 0:
            raise ConfigError(f"{where}.{key} must be a positive number, got {value}")
        values[Limits.WIRE[key]] = value
    if "max_new_tokens" in values and "default_max_new_tokens" not in values:
        # A lower cap alone lowers the default with it, rather than contradicting it.
        values["default_max_new_tokens"] = min(Limits.default_max_new_tokens,
                                               values["max_new_tokens"])
    limits = Limits(**values)
    if limits.default_max_new_tokens > limits.max_new_tokens:
        raise ConfigError(
            f"{where}.defaultMaxNewTokens ({limits.default_max_new_tokens}) must not exceed "
            f"maxNewTokens ({limits.max_new_tokens})"
        )
    return limits


def _task(where: str, raw: Any) -> TaskRoute:
    _expect(where, raw, dict, "an object")
    allowed = {"name", "type", "instruction", "labels", "adapter", "service"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]} is not a task field; accepted: {sorted(allowed)}")
    name = _expect(f"{where}.name", raw.get("name"), str, "a task name")
    if not TASK_NAME.match(name):
        raise ConfigError(f"{where}.name '{name}' is not a DNS-1123 label (a-z, 0-9 and -)")
    kind = raw.get("type")
    if kind not in TASK_TYPES:
        raise ConfigError(f"{where}.type must be classification or generation, got {kind!r}")
    instruction = _expect(f"{where}.instruction", raw.get("instruction"), str, "a string")
    labels = raw.get("labels") or []
    _expect(f"{where}.labels", labels, list, "a list of strings")
    if kind == "classification" and len(labels) < 2:
        raise ConfigError(f"{where}.labels: a classification task needs at least 2 labels")
    if kind == "generation" and labels:
        raise ConfigError(f"{where}.labels: only classification tasks have labels")
    for i, label in enumerate(labels):
        if not isinstance(label, str) or not label:
            raise ConfigError(f"{where}.labels[{i}] must be a non-empty string")
    for key in ("adapter", "service"):
        if raw.get(key) is not None:
            _expect(f"{where}.{key}", raw[key], str, "a string")
    return TaskRoute(
        name=name,
        type=kind,
        instruction=instruction,
        labels=tuple(labels),
        adapter=raw.get("adapter"),
        service=raw.get("service"),
    )


def parse_config(raw: Any, source: str = "config") -> GatewayConfig:
    """A GatewayConfig from decoded JSON; errors read `SOURCE: tasks[1].type must be ...`."""
    try:
        _expect("the config", raw, dict, "a JSON object")
        tasks_raw = _expect("tasks", raw.get("tasks"), list, "a non-empty list of tasks")
        if not tasks_raw:
            raise ConfigError("tasks must be a non-empty list of tasks")
        tasks: dict[str, TaskRoute] = {}
        services: dict[str, str] = {}
        for i, item in enumerate(tasks_raw):
            task = _task(f"tasks[{i}]", item)
            if task.name in tasks:
                raise ConfigError(f"tasks[{i}].name '{task.name}' appears twice")
            if task.service and task.service in services:
                raise ConfigError(
                    f"tasks[{i}].service '{task.service}' is already the service of task "
                    f"'{services[task.service]}'"
                )
            tasks[task.name] = task
            if task.service:
                services[task.service] = task.name
        fmt = raw.get("promptFormat")
        if fmt is None:
            prompt_format = PLAIN
        else:
            _expect("promptFormat", fmt, dict, "an object with prefix and suffix")
            for key in ("prefix", "suffix"):
                _expect(f"promptFormat.{key}", fmt.get(key), str, "a string")
            prompt_format = PromptFormat.from_dict(fmt)
        limits = _limits("limits", raw["limits"]) if "limits" in raw else Limits()
        return GatewayConfig(
            tasks=tasks,
            prompt_format=prompt_format,
            limits=limits,
            model=str(raw.get("model") or "model"),
            revision=raw.get("revision"),
            served_model_name=raw.get("servedModelName"),
            cross_task_access=_expect("crossTaskAccess", raw.get("crossTaskAccess", False),
                                      bool, "true or false"),
        )
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


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
