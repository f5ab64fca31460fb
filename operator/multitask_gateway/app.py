"""The gateway's HTTP app: routes, limits, streaming pass-through and metrics.

    mtm gateway --config gateway.json --upstream http://127.0.0.1:8081 --engine tgi --port 8080

Endpoints (TGI's, so that old clients keep working, plus a small task API):
  POST /generate, /generate_stream, /        task from X-Task or the Host header
  POST /tasks/<task>/generate, .../generate_stream, /tasks/<task>
  POST /v1/tasks/<task>   {"input": "...", "parameters"?: {...}} -> {"task", "output", "label"?}
  GET  /v1/tasks, /info, /health, /tasks/<task>/info, /tasks/<task>/health
  GET  /metrics (Prometheus), /livez and /readyz (the gateway process itself)
  POST /v1/chat/completions, /v1/completions; GET /v1/models   the OpenAI API (openai_api.py)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import errors, routing
from .config import GatewayConfig, TaskRoute
from .generation import Generation, build, decode_json
from .metrics import Call, GatewayMetrics
from .openai_api import OpenAIEndpoints
from .split import Split
from .upstream import Upstream

ROUTES_HELP = (
    "/generate, /generate_stream, /info, /health, /metrics, /v1/tasks, /v1/tasks/<task>, "
    "/tasks/<task>/{generate,generate_stream,info,health}, and the OpenAI API: "
    "/v1/chat/completions, /v1/completions, /v1/models (also under /tasks/<task>)"
)
# Writes a stream's events to the client: (response, generation, first event, the rest).
Relay = Callable[
    [web.StreamResponse, Generation, dict[str, Any], AsyncIterator[dict[str, Any]]],
    Awaitable[None],
]
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell nginx-style proxies not to buffer the stream
}


class Gateway:
    def __init__(
        self, config: GatewayConfig, upstream: Upstream, metrics: GatewayMetrics | None = None
    ) -> None:
        self.config = config
        self.upstream = upstream
        self.metrics = metrics or GatewayMetrics()
        self.in_flight = {name: 0 for name in config.tasks}
        self._gauges: dict[str, Any] = {}  # in_flight children by task (see metrics.py)
        self.split = Split(config, self.metrics.rollout, config.limits.timeout_seconds)
        self.metrics.rollout.serving(config.digest())

    def reload(self, config: GatewayConfig) -> None:
        """Serve `config` from the next request on (a rollout step: watch.py). What the
        process was started with (the upstream, the body-size limit) stays."""
        self.config = config
        self.split.config = config
        for name in config.tasks:
            self.in_flight.setdefault(name, 0)
        self.metrics.rollout.serving(config.digest())

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.config.limits.max_body_bytes,
            middlewares=[self.split.middleware, self._json_errors],
        )
        app.on_startup.append(lambda _: self.upstream.start())
        app.on_startup.append(lambda _: self.split.start())
        app.on_cleanup.append(lambda _: self.upstream.close())
        app.on_cleanup.append(lambda _: self.split.close())
        post, get = web.post, web.get
        app.add_routes([
            post("/generate", self.generate),
            post("/generate_stream", self.generate_stream),
            post("/", self.compat),
            post("/tasks/{task}/generate", self.generate),
            post("/tasks/{task}/generate_stream", self.generate_stream),
            post("/tasks/{task}", self.compat),
            post("/tasks/{task}/", self.compat),
            post("/v1/tasks/{task}", self.task_api),
            get("/v1/tasks", self.list_tasks),
            get("/info", self.info),
            get("/tasks/{task}/info", self.info),
            get("/health", self.health),
            get("/tasks/{task}/health", self.health),
            get("/metrics", self.prometheus),
            get("/livez", self.alive),
            get("/readyz", self.alive),
            *OpenAIEndpoints(self).routes(),
        ])
        return app

    @web.middleware
    async def _json_errors(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """aiohttp's own errors (no route, wrong method, body too large) in TGI's JSON shape."""
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except web.HTTPException as error:
            if error.status < 400:
                raise
            if error.status == 404:
                message = f"no route {request.method} {request.path}; the gateway serves "
                message += ROUTES_HELP
                kind = "not_found"
            elif error.status == 413:
                message = (
                    f"the request body is larger than {self.config.limits.max_body_bytes} bytes, "
                    "the gateway's limit (limits.maxBodyBytes)"
                )
                kind = "payload_too_large"
            elif error.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
                kind = "method_not_allowed"
            else:
                message, kind = error.reason, "bad_request"
            failure = errors.GatewayError(error.status, message, kind)
            return failure.openai_response() if _openai_path(request.path) else failure.response()

    # ------------------------------------------------------------------ generation

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "generate", stream=False)

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "generate_stream", stream=True)

    async def compat(self, request: web.Request) -> web.StreamResponse:
        """TGI's `/`: /generate or /generate_stream depending on the body's `stream` flag (what
        huggingface_hub's client posts to when given a base URL)."""
        return await self._serve(request, "compat", stream=None)

    async def task_api(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "task_api", stream=False)

    async def measured(
        self,
        endpoint: str,
        handle: Callable[[Call], Awaitable[web.StreamResponse]],
        error_response: Callable[[errors.GatewayError], web.Response],
    ) -> web.StreamResponse:
        """Run `handle` with what every generation endpoint shares: a GatewayError becomes the
        endpoint's error answer, and the request is counted in the metrics under the task
        `handle` names in its Call (499 when the client hung up, as nginx counts it)."""
        start = time.perf_counter()
        call = Call()
        try:
            response = await handle(call)
        except errors.GatewayError as error:
            self.metrics.error(call.task, error.error_type)
            response = error_response(error)
        except asyncio.CancelledError:
            self.metrics.observe(call.task, endpoint, 499, time.perf_counter() - start)
            raise
        self.metrics.observe(call.task, endpoint, response.status, time.perf_counter() - start)
        return response

    async def _serve(
        self, request: web.Request, endpoint: str, stream: bool | None
    ) -> web.StreamResponse:
        async def handle(call: Call) -> web.StreamResponse:
            task = routing.require(self.config, request.match_info.get("task"), request.headers)
            call.task = task.name
            data = decode_json(await self.body(request))
            if endpoint == "task_api":
                generation = build(
                    self.config, task, data.get("input"), data.get("parameters"), False, "input"
                )
            else:
                wants_stream = bool(data.get("stream")) if stream is None else stream
                generation = build(
                    self.config, task, data.get("inputs"), data.get("parameters"), wants_stream
                )
            with self.slot(task):
                if generation.stream:
                    return await self.stream(request, generation)
                return await self._generate(generation, endpoint == "task_api")

        return await self.measured(endpoint, handle, errors.GatewayError.response)

    async def body(self, request: web.Request) -> bytes:
        limit = self.config.limits.max_body_bytes
        size = request.content_length
        if size is None or size <= limit:
            seconds = self.config.limits.body_timeout_seconds
            try:
                async with asyncio.timeout(seconds):
                    return await request.read()  # aiohttp enforces client_max_size if chunked
            except web.HTTPRequestEntityTooLarge:
                size = None
            except TimeoutError:
                raise errors.GatewayError(
                    408, f"the request body did not arrive within {seconds:g} s "
                    "(limits.bodyTimeoutSeconds)", "request_timeout",
                ) from None
        raise errors.GatewayError(
            413,
            f"the request body is {'larger than ' if size is None else ''}"
            f"{size or limit} bytes; the gateway's limit (limits.maxBodyBytes) is {limit}",
            "payload_too_large",
        )

    @contextmanager
    def slot(self, task: TaskRoute) -> Iterator[None]:
        limit = self.config.limits.max_concurrency_per_task
        if self.in_flight[task.name] >= limit:
            raise errors.GatewayError(
                429,
                f"task '{task.name}' already has {limit} requests in flight, the gateway's "
                "limit (limits.maxConcurrencyPerTask); retry later",
                "overloaded",
            )
        self.in_flight[task.name] += 1
        gauge = self._gauges.get(task.name)
        if gauge is None:
            gauge = self._gauges[task.name] = self.metrics.in_flight.labels(task.name)
        gauge.inc()
        try:
            yield
        finally:
            self.in_flight[task.name] -= 1
            gauge.dec()

    async def _generate(self, generation: Generation, task_api: bool) -> web.Response:
        answer = (await self.upstream.generate(generation.prompt, generation.parameters)).body
        text = answer.get("generated_text")
        if not isinstance(text, str):
            raise errors.bad_upstream("the inference server answered without generated_text")
        generation.check_label(text)
        if task_api:
            result: dict[str, Any] = {"task": generation.task.name, "output": text}
            if generation.task.classification:
                result["label"] = text
            return web.json_response(result)
        answer["generated_text"] = generation.finish_text(text)
        return web.json_response(answer)

    async def stream(
        self,
        request: web.Request,
        generation: Generation,
        relay: Relay | None = None,
        error_event: Callable[[errors.GatewayError], bytes] = errors.GatewayError.sse,
    ) -> web.StreamResponse:
        """Answer with the upstream's stream: `relay` writes its events in the endpoint's shape
        (TGI's by default), `error_event` a failure after the stream has started."""
        events: AsyncGenerator[dict[str, Any], None] = self.upstream.stream(
            generation.prompt, generation.parameters
        )
        try:
            # Wait for the first event before answering 200: a failure to reach the upstream
            # is then an ordinary HTTP error, not an event inside a successful stream.
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise errors.bad_upstream("the inference server sent an empty stream") from None
            response = web.StreamResponse(headers=SSE_HEADERS)
            await response.prepare(request)
            try:
                await (relay or self._relay)(response, generation, event, events)
            except errors.GatewayError as error:
                self.metrics.error(generation.task.name, error.error_type)
                await response.write(error_event(error))
            except ConnectionResetError:
                return response  # the client left; `finally` stops the upstream generation
            await response.write_eof()
            return response
        finally:
            await events.aclose()

    async def _relay(
        self,
        response: web.StreamResponse,
        generation: Generation,
        event: dict[str, Any],
        events: AsyncIterator[dict[str, Any]],
    ) -> None:
        """Pass events through as they arrive, fixing up the final one."""
        while True:
            final = event.get("generated_text")
            if final is not None:
                generation.check_label(final)
                event["generated_text"] = generation.finish_text(final)
            if not generation.client_details:
                event["details"] = None
            await response.write(b"data:" + json.dumps(event).encode() + b"\n\n")
            if final is not None:
                return
            try:
                event = await anext(events)
            except StopAsyncIteration:
                raise errors.bad_upstream(
                    "the inference server ended the stream without a final answer"
                ) from None

    # ------------------------------------------------------------------ the rest

    async def list_tasks(self, request: web.Request) -> web.Response:
        return web.json_response({"tasks": [self._describe(t) for t in self.config.tasks.values()]})

    async def info(self, request: web.Request) -> web.Response:
        try:
            task = routing.resolve(self.config, request.match_info.get("task"), request.headers)
            info = await self.upstream.info()
        except errors.GatewayError as error:
            return error.response()
        info["gateway"] = {
            "model": self.config.model,
            "revision": self.config.revision,
            "engine": self.upstream.engine,
            "tasks": sorted(self.config.tasks),
            "max_new_tokens": self.config.limits.max_new_tokens,
        }
        if task is not None:
            info["task"] = self._describe(task)
        return web.json_response(info)

    async def health(self, request: web.Request) -> web.Response:
        """TGI's /health: 200 when the inference server can answer, else 503 with the reason."""
        try:
            routing.resolve(self.config, request.match_info.get("task"), request.headers)
            await self.upstream.health()
        except errors.GatewayError as error:
            return error.response()
        return web.Response(status=200)

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def alive(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    @staticmethod
    def _describe(task: TaskRoute) -> dict[str, Any]:
        """A task as /v1/tasks and /info show it: its config entry without the instruction."""
        return {k: v for k, v in task.to_wire().items() if k != "instruction"}


def _openai_path(path: str) -> bool:
    """Whether a path is in the OpenAI API's space (its errors then take OpenAI's shape)."""
    if path.startswith("/tasks/"):
        path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else path
    return path.startswith("/v1/") and not path.startswith("/v1/tasks")


def create_app(config: GatewayConfig, upstream: Upstream) -> web.Application:
    return Gateway(config, upstream).app()
