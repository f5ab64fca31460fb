"""A development stand-in for the inference server: TGI's API over a transformers model.

    mtm serve-model DIR [--port 8081] [--host 127.0.0.1]

DEVELOPMENT ONLY. Production serves through text-generation-inference or vLLM (the operator
renders those Deployments); this server exists so that the gateway, `mtm run --serve` and the
tests work on a laptop without a GPU. It answers TGI's /generate, /generate_stream, `/`
(either, by the body's `stream` flag), /info and /health, decodes one request at a time on
CPU, and enforces regex grammars that are alternations of literal strings (the gateway's label
constraints) during decoding; see model.py. DIR is an exported model directory: a merged
model, or `base/` plus `adapters/<group>/` (LoRA adapters picked by `adapter_id`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from aiohttp import web
from multitask_gateway import errors
from multitask_gateway.constraints import literal_alternatives
from multitask_gateway.generation import check_parameters, decode_json

DEFAULT_MAX_NEW_TOKENS = 100  # TGI's client-side default


def _labels(params: dict[str, Any]) -> list[str] | None:
    grammar = params.pop("grammar", None)
    if grammar is None:
        return None
    if grammar.get("type") != "regex":
        raise errors.validation(
            f"grammar type '{grammar.get('type')}' is not supported by the development server; "
            "it supports regex grammars that are alternations of literal strings"
        )
    try:
        return literal_alternatives(str(grammar.get("value", "")))
    except ValueError as error:
        raise errors.validation(
            f"grammar: {error}; the development server supports only alternations of literal "
            "strings, like (refund|shipping|other)"
        ) from None


def _check_supported(params: dict[str, Any]) -> None:
    if (params.get("best_of") or 1) > 1:
        raise errors.validation("best_of > 1 is not supported by the development server")
    for key in ("watermark", "decoder_input_details", "top_n_tokens"):
        if params.get(key):
            raise errors.validation(f"{key} is not supported by the development server")


class DevServer:
    def __init__(self, model: Any, model_id: str) -> None:
        self.model = model  # a DevModel (or anything with its generate() signature)
        self.model_id = model_id

    def app(self) -> web.Application:
        app = web.Application(client_max_size=8 << 20)
        app.add_routes([
            web.post("/generate", self.generate),
            web.post("/generate_stream", self.generate_stream),
            web.post("/", self.compat),
            web.get("/info", self.info),
            web.get("/health", self.health),
        ])
        return app

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, stream=False)

    async def generate_stream(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, stream=True)

    async def compat(self, request: web.Request) -> web.StreamResponse:
        """TGI's `/`: either of the above by the body's `stream` flag."""
        return await self._serve(request, stream=None)

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response({
            "model_id": self.model_id,
            "model_dtype": "torch.float32",
            "model_device_type": "cpu",
            "max_total_tokens": self.model.max_total_tokens,
            "max_concurrent_requests": 1,
            "max_best_of": 1,
            "adapters": self.model.adapters,
            "router": "mtm serve-model (development stand-in for text-generation-inference)",
            "version": "dev",
        })

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def _serve(self, request: web.Request, stream: bool | None) -> web.StreamResponse:
        try:
            data = decode_json(await request.read())
            inputs = data.get("inputs")
            if not isinstance(inputs, str) or not inputs:
                raise errors.validation("inputs must be a non-empty string")
            params = check_parameters(data.get("parameters"))
            _check_supported(params)
            labels = _labels(params)
            params.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
            wants_stream = bool(data.get("stream")) if stream is None else stream
            if wants_stream:
                return await self._stream(request, inputs, params, labels)
            return await self._generate(inputs, params, labels)
        except errors.GatewayError as error:
            return error.response()

    async def _generate(self, inputs: str, params: dict[str, Any], labels: Any) -> web.Response:
        from .model import RequestError

        try:
            done = await asyncio.to_thread(self.model.generate, inputs, params, labels)
        except RequestError as error:
            raise errors.validation(str(error)) from None
        answer: dict[str, Any] = {"generated_text": self._full(inputs, params, done.text)}
        if params.get("details"):
            answer["details"] = {
                "finish_reason": done.reason,
                "generated_tokens": len(done.tokens),
                "seed": done.seed,
                "prefill": [],
                "tokens": done.tokens,
            }
        # As TGI does: token counts in headers (the gateway's OpenAI API reports them as usage).
        counts = {"x-prompt-tokens": str(done.prompt_tokens),
                  "x-generated-tokens": str(len(done.tokens))}
        return web.json_response(answer, headers=counts)

    async def _stream(
        self, request: web.Request, inputs: str, params: dict[str, Any], labels: Any
    ) -> web.StreamResponse:
        from .model import RequestError

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        cancelled = threading.Event()

        def on_token(token: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, token)

        job = asyncio.ensure_future(
            asyncio.to_thread(self.model.generate, inputs, params, labels, on_token, cancelled)
        )
        job.add_done_callback(lambda _: queue.put_nowait(None))
        response: web.StreamResponse | None = None
        pending: dict[str, Any] | None = None  # TGI puts the final text on the last token
        index = 0
        try:
            while (token := await queue.get()) is not None:
                if response is None:
                    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                    await response.prepare(request)
                if pending is not None:
                    await response.write(_event(index, pending))
                index += 1
                pending = token
            try:
                done = job.result()
            except RequestError as error:
                failure = errors.validation(str(error))
                if response is None:
                    return failure.response()
                await response.write(failure.sse())
                return response
            if response is None or pending is None:
                return errors.bad_upstream("the generation was cancelled").response()
            final = {
                "generated_text": self._full(inputs, params, done.text),
                "details": {
                    "finish_reason": done.reason,
                    "generated_tokens": len(done.tokens),
                    "seed": done.seed,
                    "input_length": done.prompt_tokens,
                },
            }
            await response.write(_event(index, pending, final))
            await response.write_eof()
            return response
        except ConnectionResetError:
            return response or web.Response(status=499)
        finally:
            cancelled.set()  # stops the decoding loop if the client went away

    @staticmethod
    def _full(inputs: str, params: dict[str, Any], text: str) -> str:
        return inputs + text if params.get("return_full_text") else text


def _event(index: int, token: dict[str, Any], final: dict[str, Any] | None = None) -> bytes:
    event = {"index": index, "token": token, "generated_text": None, "details": None}
    if final:
        event.update(final)
    return b"data:" + json.dumps(event).encode() + b"\n\n"


def create_dev_app(directory: str | Path, max_total_tokens: int | None = None) -> web.Application:
    from .model import DevModel

    model = DevModel(directory, max_total_tokens=max_total_tokens)
    return DevServer(model, str(directory)).app()
