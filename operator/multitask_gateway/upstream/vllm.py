"""vLLM through its OpenAI-compatible `/v1/completions`, translated to and from TGI's shapes.

The prompt is already templated by the gateway, so the plain completions endpoint is the right
one (chat completions would apply the chat template a second time). A LoRA adapter is selected
by naming it as the `model` (vLLM's `--lora-modules NAME=PATH`); labels are enforced with
vLLM's structured outputs (`structured_outputs: {"regex": ...}`, vLLM >= 0.10.2).

Unary calls (completions without streaming, /health, /v1/models) go through the lean pool of
upstream/http1.py, as TGI's do (why: see there); streams through aiohttp.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .. import errors
from .unary import UnaryClient, text_of

# TGI parameters that have no vLLM completions counterpart: refused rather than ignored.
UNSUPPORTED = ("best_of", "decoder_input_details", "top_n_tokens", "typical_p", "watermark")
FINISH_REASONS = {"length": "length", "stop": "eos_token"}


class VllmUpstream:
    engine = "vllm"

    def __init__(self, url: str, timeout: float, served_model_name: str) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.model = served_model_name
        self._session: aiohttp.ClientSession | None = None
        self._unary = UnaryClient(self.url, timeout, _vllm_error)

    async def start(self) -> None:
        self._unary.start()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self._unary.close()

    def completion_body(self, prompt: str, parameters: dict[str, Any], stream: bool) -> dict:
        """The /v1/completions request for a TGI request."""
        for key in UNSUPPORTED:
            if parameters.get(key) is not None and parameters.get(key) is not False:
                raise errors.validation(
                    f"parameters.{key} is not supported when the gateway serves through vLLM"
                )
        body: dict[str, Any] = {
            "model": parameters.get("adapter_id") or self.model,
            "prompt": prompt,
            "max_tokens": parameters.get("max_new_tokens"),
            "stream": stream,
        }
        # TGI decodes greedily unless do_sample is set; vLLM samples at temperature 1 by default.
        if parameters.get("do_sample"):
            body["temperature"] = parameters.get("temperature", 1.0)
            for key in ("top_k", "top_p"):
                if key in parameters:
                    body[key] = parameters[key]
        else:
            body["temperature"] = 0.0
        for tgi_key, vllm_key in (
            ("seed", "seed"),
            ("stop", "stop"),
            ("frequency_penalty", "frequency_penalty"),
            ("repetition_penalty", "repetition_penalty"),
            ("truncate", "truncate_prompt_tokens"),
        ):
            if tgi_key in parameters:
                body[vllm_key] = parameters[tgi_key]
        grammar = parameters.get("grammar")
        if grammar is not None:
            kind = "regex" if grammar.get("type") == "regex" else "json"
            body["structured_outputs"] = {kind: grammar.get("value")}
        return body

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = self.completion_body(prompt, parameters, stream=False)
        data = await self._unary.call_json("POST", "/v1/completions", body)
        try:
            choice = data["choices"][0]
            text = choice["text"]
        except (KeyError, IndexError, TypeError):
            raise errors.bad_upstream(f"vLLM answered without choices: {str(data)[:300]}") from None
        answer: dict[str, Any] = {"generated_text": text}
        if parameters.get("details"):
            answer["details"] = {
                "finish_reason": FINISH_REASONS.get(choice.get("finish_reason"), "stop_sequence"),
                "generated_tokens": (data.get("usage") or {}).get("completion_tokens", 0),
                "seed": parameters.get("seed"),
                "prefill": [],
                "tokens": [],
            }
        return answer

    async def stream(
        self, prompt: str, parameters: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        body = self.completion_body(prompt, parameters, stream=True)
        response = await self._request("POST", "/v1/completions", body)
        text, count = "", 0
        try:
            async for raw in _sse_lines(response, self.timeout):
                if raw == "[DONE]":
                    break
                chunk = json.loads(raw)
                if "error" in chunk:
                    raise errors.bad_upstream(f"vLLM failed mid-stream: {_message(chunk)}")
                choice = chunk["choices"][0]
                piece, reason = choice.get("text", ""), choice.get("finish_reason")
                text += piece
                count += 1 if piece else 0
                event = {
                    "index": count,
                    "token": {"id": -1, "text": piece, "logprob": 0.0, "special": False},
                    "generated_text": None,
                    "details": None,
                }
                if reason is not None:
                    event["generated_text"] = text
                    event["details"] = {
                        "finish_reason": FINISH_REASONS.get(reason, "stop_sequence"),
                        "generated_tokens": count,
                        "seed": parameters.get("seed"),
                    }
                    yield event
                    return
                if piece:
                    yield event
            raise errors.bad_upstream("vLLM ended the stream without a finish reason")
        finally:
            response.release()

    async def health(self) -> None:
        await self._unary.call("GET", "/health")

    async def info(self) -> dict[str, Any]:
        models = await self._unary.call_json("GET", "/v1/models")
        data = models.get("data") if isinstance(models, dict) else None
        names = [m.get("id") for m in data or [] if isinstance(m, dict)]
        return {"model_id": self.model, "models": names, "router": "vllm"}

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> aiohttp.ClientResponse:
        if self._session is None:
            raise RuntimeError("VllmUpstream.start() was not awaited")
        try:
            response = await self._session.request(method, self.url + path, json=body)
        except aiohttp.ClientConnectionError as error:
            if isinstance(error, aiohttp.ServerTimeoutError):
                raise errors.silent(self.url, self.timeout) from None
            raise errors.unreachable(self.url, error) from None
        except TimeoutError:
            raise errors.silent(self.url, self.timeout) from None
        if response.status != 200:
            try:
                payload = await response.json(content_type=None)
                message = _message(payload)
            except Exception:  # noqa: BLE001 - not JSON: use the text
                message = (await response.text())[:500]
            finally:
                response.release()
            raise errors.from_upstream_status(response.status, message, None)
        return response


def _vllm_error(payload: Any, raw: bytes) -> tuple[str, str | None]:
    return (_message(payload) if payload is not None else text_of(raw)) or "no details", None


def _message(payload: Any) -> str:
    """The message of vLLM's error shapes: {"error": {"message"}} or {"message"}."""
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        if "message" in payload:
            return str(payload["message"])
        if inner:
            return str(inner)
    return str(payload)[:500]


async def _sse_lines(response: aiohttp.ClientResponse, timeout: float) -> AsyncIterator[str]:
    """The data of each server-sent event, as it arrives."""
    while True:
        try:
            line = await asyncio.wait_for(response.content.readline(), timeout)
        except TimeoutError:
            raise errors.timeout(f"vLLM sent nothing for {timeout:g} s mid-stream") from None
        if not line:
            return
        line = line.strip()
        if line.startswith(b"data:"):
            yield line[5:].strip().decode()
