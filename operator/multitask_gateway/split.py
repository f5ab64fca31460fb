"""The handover of a task's old Service, request by request (spec.serving.rollout).

A task whose route has a `rollout` is being handed over: of the requests that arrive through
its old Service (the Host header), `weight` percent are answered by the unified model, as every
other request is, and the rest by the old backend, to which the gateway passes the request
exactly as the client sent it (method, path, query, headers, body) and from which it relays the
answer as it comes (streams included). Requests that name a task some other way (path, X-Task,
the gateway's own Service) are new clients and always go to the unified model.

A `sampleRate` share of the requests that can be compared (unary generations: TGI's /generate
and /, the OpenAI completions endpoints) is also sent to the side that does not answer, in the
background, and the two answers compared: the same label for classification, chrF >= the
route's `similarity` for generation. The client never waits for the comparison and never sees
its answer. Counts go to Prometheus per task and step (`mtm_gateway_rollout_*`), where the
operator reads them to promote or roll back the task.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from . import routing
from .config import GatewayConfig, TaskRoute
from .metrics import RolloutMetrics

UNIFIED, LEGACY = "unified", "legacy"
# Headers that belong to one hop (RFC 9110 7.6.1), never forwarded either way.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length",
})
COMPARABLE_PATHS = frozenset({"/generate", "/", "/v1/chat/completions", "/v1/completions"})
Handler = Any  # aiohttp's middleware handler type


def answer_text(body: bytes) -> str | None:
    """The generated text of a unary answer in TGI's or OpenAI's shape, or None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("generated_text"), str):
        return str(data["generated_text"])
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
        if isinstance(choice.get("text"), str):
            return str(choice["text"])
    return None


def agree(task: TaskRoute, unified: str, legacy: str, similarity: float) -> bool:
    """Whether two answers to the same request agree: the same label (classification, compared
    case- and space-insensitively), a chrF of at least `similarity` (generation)."""
    if task.classification:
        return unified.strip().casefold() == legacy.strip().casefold()
    if unified.strip() == legacy.strip():
        return True
    if not unified.strip() or not legacy.strip():
        return False
    # sacrebleu's chrF, the evaluator's metric (trainer metrics.chrf), on one pair.
    from sacrebleu.metrics import CHRF

    return bool(CHRF().sentence_score(unified, [legacy]).score / 100.0 >= similarity)


def comparable(request: web.Request, body: bytes) -> bool:
    if request.method != "POST" or request.path not in COMPARABLE_PATHS:
        return False
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and not data.get("stream")


class Split:
    """The rollout middleware of one gateway (see the module docstring)."""

    def __init__(self, config: GatewayConfig, metrics: RolloutMetrics, timeout: float,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.metrics = metrics
        self.timeout = timeout
        self.rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout,
                                          sock_read=self.timeout),
            auto_decompress=False,  # the client gets the old backend's bytes, encoding kept
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self.timeout)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def route(self, request: web.Request) -> TaskRoute | None:
        """The task whose handover this request takes part in: it came through the task's old
        Service (Host) and the task has a rollout."""
        label = routing.host_label(request.headers.get("Host"))
        task = self.config.by_service.get(label) if label else None
        return task if task is not None and task.rollout is not None else None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = self.route(request)
        if task is None or task.rollout is None:
            return await handler(request)  # type: ignore[no-any-return]
        rollout = task.rollout
        side = UNIFIED if self.rng.random() * 100 < rollout.weight else LEGACY
        body = await request.read()  # cached: the unified handler reads it again
        compare = self.rng.random() < rollout.sample_rate and comparable(request, body)
        start = time.perf_counter()
        if side == UNIFIED:
            response: web.StreamResponse = await handler(request)
        elif compare:
            response = await self._legacy_buffered(request, task, body)
        else:
            response = await self._legacy_streamed(request, task, body)
        self.metrics.answered(task.name, rollout.step, side, "client", response.status,
                              time.perf_counter() - start)
        if compare and isinstance(response, web.Response) and isinstance(response.body, bytes):
            other = (self._mirror_to_legacy(request, task, body) if side == UNIFIED
                     else self._mirror_to_unified(request, handler))
            job = asyncio.create_task(self._compare(task, side, response.status,
                                                    response.body, other))
            self._background.add(job)
            job.add_done_callback(self._background.discard)
        return response

    # ------------------------------------------------------------------ the old backend

    def _request_headers(self, request: web.Request) -> CIMultiDict[str]:
        return CIMultiDict((k, v) for k, v in request.headers.items()
                           if k.lower() not in HOP_BY_HOP)

    async def _open(self, request: web.Request, task: TaskRoute,
                    body: bytes) -> aiohttp.ClientResponse:
        assert self._session is not None and task.rollout is not None
        url = task.rollout.legacy.rstrip("/") + str(request.rel_url)
        return await self._session.request(request.method, url, data=body or None,
                                           headers=self._request_headers(request),
                                           allow_redirects=False)

    @staticmethod
    def _response_headers(upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        return CIMultiDict((k, v) for k, v in upstream.headers.items()
                           if k.lower() not in HOP_BY_HOP)

    def _unreachable(self, task: TaskRoute, error: BaseException) -> web.Response:
        assert task.rollout is not None
        message = (f"the old backend of task '{task.name}' ({task.rollout.legacy}) did not "
                   f"answer: {type(error).__name__}: {error}")
        return web.json_response({"error": message, "error_type": "unreachable"}, status=502)

    async def _legacy_streamed(self, request: web.Request, task: TaskRoute,
                               body: bytes) -> web.StreamResponse:
        try:
            upstream = await self._open(request, task, body)
        except (aiohttp.ClientError, TimeoutError) as error:
            return self._unreachable(task, error)
        try:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
                                          headers=self._response_headers(upstream))
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()

    async def _legacy_buffered(self, request: web.Request, task: TaskRoute,
                               body: bytes) -> web.StreamResponse:
        try:
            upstream = await self._open(request, task, body)
            async with upstream:
                data = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            return self._unreachable(task, error)
        return web.Response(status=upstream.status, reason=upstream.reason, body=data,
                            headers=self._response_headers(upstream))

    # ------------------------------------------------------------------ the comparison

    async def _mirror_to_legacy(self, request: web.Request, task: TaskRoute,
                                body: bytes) -> tuple[int, bytes]:
        try:
            upstream = await self._open(request, task, body)
            async with upstream:
                return upstream.status, await upstream.read()
        except (aiohttp.ClientError, TimeoutError):
            return 599, b""  # no answer: counted as the old backend's failure

    async def _mirror_to_unified(self, request: web.Request,
                                 handler: Handler) -> tuple[int, bytes]:
        response = await handler(request)  # the unified path, in this process
        body = response.body if isinstance(response, web.Response) else None
        return response.status, body if isinstance(body, bytes) else b""

    async def _compare(self, task: TaskRoute, side: str, status: int, body: bytes,
                       other: Any) -> None:
        assert task.rollout is not None
        rollout = task.rollout
        other_side = LEGACY if side == UNIFIED else UNIFIED
        start = time.perf_counter()
        try:
            other_status, other_body = await other
        except Exception:  # noqa: BLE001 - the mirror is best effort; it never reaches a client
            other_status, other_body = 599, b""
        self.metrics.answered(task.name, rollout.step, other_side, "mirror", other_status,
                              time.perf_counter() - start)
        answers = {side: (status, body), other_side: (other_status, other_body)}
        texts = {s: answer_text(b) if c == 200 else None for s, (c, b) in answers.items()}
        unified, legacy = texts[UNIFIED], texts[LEGACY]
        if unified is None or legacy is None:
            return  # one side failed (counted above) or answered in no known shape
        self.metrics.compared(task.name, rollout.step,
                              agree(task, unified, legacy, rollout.similarity))
