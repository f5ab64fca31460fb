"""OpenAI requests as the gateway accepts them, and what one becomes for the inference server.

The mapping from a chat to a task's input (docs/serving.md, "OpenAI-compatible API"):
- The input is the text of the **last message, which must be the user's**. A task was trained on
  one input under its own instruction, so earlier turns and system/developer messages are not
  sent to the model: the task's instruction (from the MultiTaskModel) takes the system prompt's
  place. A content given as parts is the text of its text parts, joined by newlines.
- `max_tokens` / `max_completion_tokens` (the newer name wins) cap the answer, up to the
  gateway's limits.maxNewTokens; absent, limits.defaultMaxNewTokens. Classification answers get
  exactly the budget their longest label needs.
- `temperature` absent or 0 decodes greedily, the way the task was evaluated; above 0 samples.
  `top_p` below 1 samples too. `stop`, `seed` and `frequency_penalty` go to the engine; `user`
  is accepted and not forwarded.
- `response_format` `json_schema` (or `json_object`) constrains a generation task's answer with
  the engine's JSON grammar. A classification task's answer is always one of its labels.
- Refused with a 400 that names the parameter, because they cannot be honoured: `n` > 1,
  `tools` / `functions` / `tool_choice`, image, audio or file parts, `logprobs` /
  `top_logprobs`, `logit_bias`, `presence_penalty` other than 0, `audio`, `prediction`; on
  /v1/completions also `echo`, `suffix`, `best_of` > 1 and more than one prompt.
- Fields the gateway does not know are ignored, as vLLM ignores them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import errors
from .config import Limits, TaskRoute

_MODEL = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)
_TYPE_NAMES = re.compile(r"^[a-z_][a-z0-9_]*$")
_PYTHON_TYPES = {"str", "int", "float", "bool", "list", "dict", "none"}


class ContentPart(BaseModel):
    model_config = _MODEL
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = _MODEL
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    model_config = _MODEL
    include_usage: bool = False


class JsonSchema(BaseModel):
    model_config = _MODEL
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = _MODEL
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class _Sampling(BaseModel):
    """What chat completions and completions share."""

    model_config = _MODEL
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    user: str | None = None
    n: int | None = Field(default=None, ge=1)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, Any] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None


class ChatRequest(_Sampling):
    messages: list[Message] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    tool_choice: Any = None
    function_call: Any = None
    audio: Any = None
    prediction: Any = None
    modalities: list[str] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool | None = None
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None


def parse(kind: type[ChatRequest] | type[CompletionRequest], data: dict[str, Any]) -> Any:
    """A validated request; the first problem as a 400 naming the parameter."""
    try:
        return kind.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        param = _path(first["loc"])
        raise errors.bad_request(f"{param}: {first['msg']}", param) from None


def _path(loc: tuple[Any, ...]) -> str:
    """`("messages", 0, "content", "str")` -> `messages[0].content` (pydantic's union-member
    tags are not fields)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _TYPE_NAMES.match(part) and part not in _PYTHON_TYPES:
            path += f".{part}" if path else part
    return path or "body"


def refuse(param: str, why: str) -> errors.GatewayError:
    return errors.bad_request(f"{param}: {why}", param)


def _refuse_common(request: _Sampling) -> None:
    if (request.n or 1) > 1:
        raise refuse("n", "the gateway answers one choice per request; send n: 1")
    if request.logit_bias:
        raise refuse("logit_bias", "is not supported by the gateway")
    if request.presence_penalty:
        raise refuse("presence_penalty", "is not supported; use frequency_penalty")


def chat_input(request: ChatRequest) -> str:
    """The task's input: the last message's text, which must be the user's."""
    for field in ("tools", "functions"):
        if getattr(request, field):
            raise refuse(field, "tool and function calling is not supported: a task answers "
                                "with its own output")
    for field in ("tool_choice", "function_call"):
        value = getattr(request, field)
        if value is not None and value != "none":
            raise refuse(field, "tool and function calling is not supported")
    if request.logprobs or request.top_logprobs:
        raise refuse("logprobs" if request.logprobs else "top_logprobs",
                     "log probabilities are not supported by the gateway")
    if request.audio is not None or (request.modalities and request.modalities != ["text"]):
        raise refuse("audio" if request.audio is not None else "modalities",
                     "only text answers are supported")
    if request.prediction is not None:
        raise refuse("prediction", "predicted outputs are not supported")
    _refuse_common(request)
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if part.type != "text":
                    raise refuse(f"messages[{i}].content[{j}].type",
                                 f"'{part.type[:40]}' parts are not supported; only text")
    last = len(request.messages) - 1
    message = request.messages[last]
    if message.role != "user":
        raise refuse(f"messages[{last}].role", f"the last message must be the user's input, "
                                               f"got a '{message.role}' message")
    content = message.content
    text = content if isinstance(content, str) or content is None else "\n".join(
        part.text or "" for part in content
    )
    if not text:
        raise refuse(f"messages[{last}].content", "the user's message is empty")
    return text


def completion_input(request: CompletionRequest) -> str:
    if request.echo:
        raise refuse("echo", "is not supported by the gateway")
    if request.suffix:
        raise refuse("suffix", "is not supported by the gateway")
    if (request.best_of or 1) > 1:
        raise refuse("best_of", "the gateway answers one choice per request")
    if request.logprobs:
        raise refuse("logprobs", "log probabilities are not supported by the gateway")
    _refuse_common(request)
    prompt = request.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise refuse("prompt", f"send one prompt per request, got {len(prompt)}")
        prompt = prompt[0]
    if not prompt:
        raise refuse("prompt", "the prompt is empty")
    return prompt


def engine_parameters(
    request: ChatRequest | CompletionRequest, task: TaskRoute, limits: Limits
) -> dict[str, Any]:
    """TGI parameters (generation.build checks, templates and constrains them further)."""
    params: dict[str, Any] = {"details": True}  # finish reason and token counts for `usage`
    newer = getattr(request, "max_completion_tokens", None)
    budget, name = (newer, "max_completion_tokens") if newer else (request.max_tokens,
                                                                    "max_tokens")
    if budget is not None:
        if budget > limits.max_new_tokens:
            raise refuse(name, f"must be at most {limits.max_new_tokens} (the gateway's "
                               f"limits.maxNewTokens), got {budget}")
        params["max_new_tokens"] = budget
    if request.temperature:
        params["do_sample"] = True
        params["temperature"] = request.temperature
    if request.top_p is not None and request.top_p < 1:
        params["do_sample"] = True
        params["top_p"] = request.top_p
    if request.stop:
        stops = [request.stop] if isinstance(request.stop, str) else request.stop
        if len(stops) > 4:
            raise refuse("stop", f"at most 4 stop sequences, got {len(stops)}")
        params["stop"] = stops
    if request.seed is not None:
        params["seed"] = request.seed
    if request.frequency_penalty:
        params["frequency_penalty"] = request.frequency_penalty
    response_format = getattr(request, "response_format", None)
    if response_format is not None and response_format.type != "text":
        if task.classification:
            raise refuse("response_format", f"task '{task.name}' is a classification task: its "
                                            "answer is always one of its labels")
        schema: dict[str, Any] = {"type": "object"}
        if response_format.type == "json_schema":
            given = response_format.json_schema
            if given is None or given.schema_ is None:
                raise refuse("response_format.json_schema.schema", "a JSON schema is required")
            schema = given.schema_
        params["grammar"] = {"type": "json", "value": schema}
    return params
