"""The OpenAI-compatible API of the gateway: every routed task is a model.

    POST /v1/chat/completions, /v1/completions        (and /tasks/<task>/v1/...)
    GET  /v1/models, /v1/models/<id>                    (and /tasks/<task>/v1/models)

Most clients of the old per-task services (the openai SDK, LangChain, LiteLLM, llama-index,
huggingface_hub's `chat_completion`; every vLLM client) call this API. Which task a request is
for: `model` naming a task or its old Service name, else the path, X-Task or Host (routing.py,
`for_model`). How a chat becomes the task's input and which parameters are honoured:
openai_requests.py. Both engines are called through their native clients (upstream/), so the
prompt is templated, the labels enforced and the adapter picked exactly as for /generate.
Limits (body size, max tokens, concurrency per task) and metrics (endpoint `chat_completions`,
`completions`, `models`) are the gateway's; errors are in OpenAI's shape (errors.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from aiohttp import web

from . import errors, routing
from .config import GatewayConfig, TaskRoute
from .generation import Generation, build, decode_json
from .metrics import NO_TASK, Call, GatewayMetrics
from .openai_requests import (
    ChatRequest,
    CompletionRequest,
    chat_input,
    completion_input,
    engine_parameters,
    parse,
)


class Gateway(Protocol):
    """What these endpoints use of the gateway (app.py's Gateway): its config, upstream and
    metrics, and the body, concurrency and streaming rules every endpoint shares."""

    config: GatewayConfig
    upstream: Any
    metrics: GatewayMetrics

    async def body(self, request: web.Request) -> bytes: ...

    def slot(self, task: TaskRoute) -> AbstractContextManager[None]: ...

    async def stream(self, request: web.Request, generation: Generation, relay: Any = None,
                     error_event: Callable[[errors.GatewayError], bytes] = ...,
                     ) -> web.StreamResponse: ...

    async def measured(
        self, endpoint: str, handle: Callable[[Call], Awaitable[web.StreamResponse]],
        error_response: Callable[[errors.GatewayError], web.Response],
    ) -> web.StreamResponse: ...

# TGI's finish reasons -> OpenAI's.
FINISH_REASONS = {"length": "length", "eos_token": "stop", "stop_sequence": "stop"}


class OpenAIEndpoints:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.created = int(time.time())  # the models' `created`: when this config was loaded

    @property
    def config(self) -> GatewayConfig:
        return self.gateway.config

    def routes(self) -> list[web.RouteDef]:
        post, get = web.post, web.get
        return [
            post("/v1/chat/completions", self.chat),
            post("/v1/completions", self.completions),
            get("/v1/models", self.models),
            get("/v1/models/{model}", self.model),
            post("/tasks/{task}/v1/chat/completions", self.chat),
            post("/tasks/{task}/v1/completions", self.completions),
            get("/tasks/{task}/v1/models", self.models),
        ]

    # ------------------------------------------------------------------ models

    def _model_entries(self) -> list[dict[str, Any]]:
        entries = []
        for task in self.config.tasks.values():
            names = [task.name] + ([task.service] if task.service else [])
            for name in names:
                entries.append({"id": name, "object": "model", "created": self.created,
                                "owned_by": self.config.model, "root": task.name,
                                "parent": None, "task_type": task.type})
        return entries

    async def models(self, request: web.Request) -> web.Response:
        start = time.perf_counter()
        entries = self._model_entries()
        path_task = request.match_info.get("task")
        if path_task is not None:
            try:
                task = routing.lookup(self.config, path_task, "from the path")
            except errors.GatewayError as error:
                return error.openai_response()
            entries = [e for e in entries if e["root"] == task.name]
        self.gateway.metrics.observe(NO_TASK, "models", 200, time.perf_counter() - start)
        return web.json_response({"object": "list", "data": entries})

    async def model(self, request: web.Request) -> web.Response:
        wanted = request.match_info["model"]
        for entry in self._model_entries():
            if entry["id"] == wanted:
                return web.json_response(entry)
        return errors.GatewayError(
            404, f"the model '{wanted}' does not exist: every task is a model; known: "
            f"{routing.known(self.config)}", "model_not_found", "model",
        ).openai_response()

    # ------------------------------------------------------------------ completions

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "chat_completions")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "completions")

    async def _serve(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        gateway = self.gateway

        async def handle(call: Call) -> web.StreamResponse:
            data = decode_json(await gateway.body(request))
            chat = endpoint == "chat_completions"
            parsed = parse(ChatRequest if chat else CompletionRequest, data)
            task = routing.for_model(
                self.config, parsed.model, request.match_info.get("task"), request.headers
            )
            call.task = task.name
            text = chat_input(parsed) if chat else completion_input(parsed)
            params = engine_parameters(parsed, task, self.config.limits)
            generation = build(self.config, task, text, params, bool(parsed.stream))
            shape = _Shape(chat, parsed.model or task.name, self.config.revision,
                           bool(parsed.stream_options and parsed.stream_options.include_usage))
            with gateway.slot(task):
                if generation.stream:
                    return await gateway.stream(
                        request, generation, shape.relay, errors.GatewayError.openai_sse
                    )
                answer = await gateway.upstream.generate(generation.prompt,
                                                         generation.parameters)
                return shape.complete(generation, answer.body, answer.prompt_tokens)

        return await gateway.measured(endpoint, handle, errors.GatewayError.openai_response)


class _Shape:
    """OpenAI's response objects for one request: chat.completion(.chunk) or text_completion."""

    def __init__(self, chat: bool, model: str, revision: str | None, usage_chunk: bool) -> None:
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.model = model
        self.fingerprint = f"mtm-{revision}" if revision else None
        self.usage_chunk = usage_chunk
        self._template = self._templates()

    def _head(self, object_type: str) -> dict[str, Any]:
        head: dict[str, Any] = {"id": self.id, "object": object_type, "created": self.created,
                                "model": self.model}
        if self.fingerprint:
            head["system_fingerprint"] = self.fingerprint
        return head

    @staticmethod
    def usage(prompt_tokens: int | None, details: dict[str, Any] | None) -> dict[str, int]:
        # As the inference server counted them; 0 where it did not say (an engine without
        # TGI's x-prompt-tokens header / input_length, or vLLM's usage).
        prompt = int(prompt_tokens or 0)
        completion = int((details or {}).get("generated_tokens") or 0)
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion}

    def complete(
        self, generation: Generation, answer: dict[str, Any], prompt_tokens: int | None
    ) -> web.Response:
        text = answer.get("generated_text")
        if not isinstance(text, str):
            raise errors.bad_upstream("the inference server answered without generated_text")
        generation.check_label(text)
        details = answer.get("details") or {}
        finish = FINISH_REASONS.get(str(details.get("finish_reason")), "stop")
        if self.chat:
            body = self._head("chat.completion")
            body["choices"] = [{"index": 0, "message": {"role": "assistant", "content": text},
                                "logprobs": None, "finish_reason": finish}]
        else:
            body = self._head("text_completion")
            body["choices"] = [{"index": 0, "text": text, "logprobs": None,
                                "finish_reason": finish}]
        body["usage"] = self.usage(prompt_tokens, details)
        return web.json_response(body)

    def _templates(self) -> tuple[bytes, bytes]:
        """The bytes around a chunk's delta (or text): everything but it is the same for every
        chunk of a stream, so it is serialised once (a token's chunk is then one json.dumps of
        its text, a visible share of the gateway's per-token cost)."""
        head = self._head("chat.completion.chunk" if self.chat else "text_completion")
        prefix = json.dumps(head)[:-1] + ', "choices": [{"index": 0, '
        prefix += '"delta": ' if self.chat else '"text": '
        suffix = ', "logprobs": null, "finish_reason": %s}]'
        suffix += ', "usage": null}\n\n' if self.usage_chunk else "}\n\n"
        return b"data: " + prefix.encode(), suffix.encode()

    def _chunk(self, piece: str | None, finish: str | None, role: bool = False) -> bytes:
        prefix, suffix = self._template
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if role else {}
            if piece is not None:
                delta["content"] = piece
            body = json.dumps(delta)
        else:
            body = json.dumps(piece or "")
        return prefix + body.encode() + suffix % (json.dumps(finish).encode(),)

    async def relay(
        self,
        response: web.StreamResponse,
        generation: Generation,
        event: dict[str, Any],
        events: AsyncIterator[dict[str, Any]],
    ) -> None:
        """TGI-shaped events in, OpenAI chunks out: a role chunk, a chunk per token, a chunk
        with the finish reason, the usage chunk when asked for, then `[DONE]`."""
        pending = self._chunk("", None, role=True) if self.chat else b""
        while True:
            token = event.get("token") or {}
            piece = token.get("text") or ""
            if piece and not token.get("special"):
                await response.write(pending + self._chunk(piece, None))
                pending = b""
            final = event.get("generated_text")
            if final is not None:
                generation.check_label(final)
                details = event.get("details") or {}
                finish = FINISH_REASONS.get(str(details.get("finish_reason")), "stop")
                ending = pending + self._chunk(None if self.chat else "", finish)
                if self.usage_chunk:
                    chunk = self._head("chat.completion.chunk" if self.chat else "text_completion")
                    chunk["choices"] = []
                    chunk["usage"] = self.usage(details.get("input_length"), details)
                    ending += b"data: " + json.dumps(chunk).encode() + b"\n\n"
                await response.write(ending + b"data: [DONE]\n\n")
                return
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise errors.bad_upstream(
                    "the inference server ended the stream without a final answer"
                ) from None
