"""Scripted stand-ins for TGI and vLLM, so that the gateway's own behaviour (routing, limits,
error mapping, streaming pass-through) is tested in milliseconds and deterministically. The
real-model tests are in test_gateway_e2e.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handler_cancellation=True)  # as multitask_gateway.serve.run
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


class FakeTgi:
    """Answers like TGI; `mode` picks the behaviour: ok, status, hang, stream_error, garbage."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []  # the path of each generation request
        self.headers: list[dict[str, str]] = []  # the headers of each generation request
        self.peers: set[Any] = set()  # the client ends of the connections they came on
        self.cancelled = asyncio.Event()  # set when a hanging request's client went away
        self.mode = "ok"
        self.text = "generated"
        self.tokens = ["one", " two", " three"]
        self.status = 422
        self.error = {"error": "Input validation error", "error_type": "validation"}
        self.received = asyncio.Event()  # set when a generation request arrives
        self.release = asyncio.Event()  # a "hang" request waits for it
        self.gate: asyncio.Queue[None] | None = None  # when set, one get() per streamed token
        self.stream_ended = asyncio.Event()  # set when a stream finishes or is cancelled
        self.prompt_tokens = 7  # what x-prompt-tokens / details.input_length report

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.post("/", self.compat),
            web.post("/generate", self.compat),
            web.post("/generate_stream", self.compat),
            web.get("/health", self.health),
            web.get("/info", self.info),
        ])
        return app

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({"model_id": "fake", "router": "fake"})

    async def health(self, request: web.Request) -> web.Response:
        if self.mode == "status":
            return web.json_response(self.error, status=self.status)
        return web.Response()

    async def compat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.path)
        self.headers.append(dict(request.headers))
        self.peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        self.received.set()
        if self.mode == "hang":
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if self.mode == "status":
            return web.json_response(self.error, status=self.status)
        if self.mode == "garbage":
            return web.Response(text="<html>proxy error</html>", content_type="text/html")
        if body.get("stream") or request.path == "/generate_stream":
            return await self._stream(request)
        answer: dict[str, Any] = {"generated_text": self.text}
        if body["parameters"].get("details"):
            answer["details"] = {"finish_reason": "eos_token", "generated_tokens": 1,
                                 "seed": None, "prefill": [], "tokens": []}
        # TGI reports token counts in headers of /generate answers.
        return web.json_response(answer, headers={"x-prompt-tokens": str(self.prompt_tokens),
                                                  "x-generated-tokens": "1"})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._events(request)
        finally:
            self.stream_ended.set()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(self.tokens):
            if self.gate is not None:
                await self.gate.get()
            last = i == len(self.tokens) - 1
            event = {
                "index": i + 1,
                "token": {"id": i, "text": piece, "logprob": -0.5, "special": False},
                "generated_text": "".join(self.tokens) if last else None,
                "details": {"finish_reason": "eos_token", "generated_tokens": len(self.tokens),
                            "seed": None, "input_length": self.prompt_tokens} if last else None,
            }
            await response.write(b"data:" + json.dumps(event).encode() + b"\n\n")
            if self.mode == "stream_error":
                failure = {"error": "CUDA out of memory", "error_type": "generation"}
                await response.write(b"data:" + json.dumps(failure).encode() + b"\n\n")
                break
        await response.write_eof()
        return response


class FakeVllm:
    """Answers /v1/completions like vLLM's OpenAI-compatible server."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.text = "refund"
        self.pieces = ["ref", "und"]
        self.status: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.add_routes([
            web.post("/v1/completions", self.completions),
            web.get("/health", self.health),
            web.get("/v1/models", self.models),
        ])
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.Response()

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "support"}]})

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.status is not None:
            error = {"error": {"message": "bad model name", "type": "BadRequestError"}}
            return web.json_response(error, status=self.status)
        usage = {"prompt_tokens": 9, "completion_tokens": len(self.pieces),
                 "total_tokens": 9 + len(self.pieces)}
        if not body.get("stream"):
            return web.json_response({
                "choices": [{"text": self.text, "finish_reason": "stop"}],
                "usage": usage,
            })
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(self.pieces):
            reason = "stop" if i == len(self.pieces) - 1 else None
            chunk = {"choices": [{"text": piece, "finish_reason": reason}]}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk = {"choices": [], "usage": usage}
            await response.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
