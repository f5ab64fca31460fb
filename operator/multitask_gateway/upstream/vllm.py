"""vLLM through its OpenAI-compatible `/v1/completions`, translated to and from TGI's shapes.

The prompt is already templated by the gateway, so the plain completions endpoint is the right
one (chat completions would apply the chat template a second time). A LoRA adapter is selected
by naming it as the `model` (vLLM's `--lora-modules NAME=PATH`); labels are enforced with
vLLM's structured outputs (`structured_outputs: {"regex": ...}`, vLLM >= 0.10.2).

Unary calls (completions without streaming, /health, /v1/models) go through the lean pool of
upstream/http1.py, as TGI's do (why: see there); streams through streams.py. Token counts come
from vLLM's `usage` (asked for on streams with `stream_options.include_usage`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .. import errors
from .base import Answer
from .streams import StreamClient
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
        self._unary = UnaryClient(self.url, timeout, _vllm_error)
        self._streams = StreamClient(self.url, timeout, _vllm_error)

    async def start(self) -> None:
        self._unary.start()
        self._streams.start()

    async def close(self) -> None:
        await self._streams.close()
        await self._unary.close()

    def completion_body(self, prompt: str, parameters: dict[str, Any],
                        stream: bool) -> dict[str, Any]:
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
        if stream:
            body["stream_options"] = {"include_usage": True}
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

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> Answer:
        body = self.completion_body(prompt, parameters, stream=False)
        data = await self._unary.call_json("POST", "/v1/completions", body)
        try:
            choice = data["choices"][0]
            text = choice["text"]
        except (KeyError, IndexError, TypeError):
            raise errors.bad_upstream(f"vLLM answered without choices: {str(data)[:300]}") from None
        usage = data.get("usage") or {}
        answer: dict[str, Any] = {"generated_text": text}
        if parameters.get("details"):
            answer["details"] = {
                "finish_reason": FINISH_REASONS.get(choice.get("finish_reason"), "stop_sequence"),
                "generated_tokens": usage.get("completion_tokens", 0),
                "seed": parameters.get("seed"),
                "prefill": [],
                "tokens": [],
            }
        return Answer(answer, usage.get("prompt_tokens"))

    async def stream(
        self, prompt: str, parameters: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        body = self.completion_body(prompt, parameters, stream=True)
        response = await self._streams.open("/v1/completions", body)
        text, count = "", 0
        final: dict[str, Any] | None = None  # held until the usage chunk that follows it
        try:
            async for chunk in self._streams.events(response):
                if not isinstance(chunk, dict):
                    raise errors.bad_upstream(f"unexpected event from vLLM: {str(chunk)[:200]}")
                if "error" in chunk:
                    raise errors.bad_upstream(f"vLLM failed mid-stream: {_message(chunk)}")
                usage = chunk.get("usage")
                if final is not None:  # only the usage chunk and [DONE] follow the final one
                    if isinstance(usage, dict):
                        final["details"]["generated_tokens"] = usage.get("completion_tokens", count)
                        final["details"]["input_length"] = usage.get("prompt_tokens")
                    continue
                choices = chunk.get("choices") or []
                if not choices:
                    continue
                choice = choices[0]
                piece, reason = choice.get("text") or "", choice.get("finish_reason")
                text += piece
                count += 1 if piece else 0
                event: dict[str, Any] = {
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
                    final = event
                    if isinstance(usage, dict):  # usage on the same chunk
                        final["details"]["input_length"] = usage.get("prompt_tokens")
                    continue
                if piece:
                    yield event
            if final is None:
                raise errors.bad_upstream("vLLM ended the stream without a finish reason")
            yield final
        finally:
            self._streams.finish(response)

    async def health(self) -> None:
        await self._unary.call("GET", "/health")

    async def info(self) -> dict[str, Any]:
        models = await self._unary.call_json("GET", "/v1/models")
        data = models.get("data") if isinstance(models, dict) else None
        names = [m.get("id") for m in data or [] if isinstance(m, dict)]
        return {"model_id": self.model, "models": names, "router": "vllm"}


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
