"""TGI through its native API: unary calls over upstream/http1.py, streams over streams.py.

The gateway templates the prompt itself (the template training used) and constrains
classification answers with a regex `grammar`, so it speaks TGI's native `/generate` and
`/generate_stream`, not its Messages API (which would apply the chat template a second time).
Unary calls are where the gateway's own cost per request shows: a classification answer takes
the inference server a few milliseconds and the gateway should add well under one, so they go
through the lean pool (why not huggingface_hub's client: see http1.py and RESULTS.md). Streams
read TGI's server-sent events with aiohttp (streams.py).

Token counts, for the OpenAI API's `usage`: TGI reports the prompt's tokens in the
`x-prompt-tokens` header of a `/generate` answer and as `details.input_length` in the last event
of a stream; the generated tokens as `details.generated_tokens` in both.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .. import errors
from .base import Answer
from .streams import StreamClient
from .unary import UnaryClient, parse_json, text_of


class TgiUpstream:
    engine = "tgi"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._unary = UnaryClient(self.url, timeout, _tgi_error)
        self._streams = StreamClient(self.url, timeout, _tgi_error)

    async def start(self) -> None:
        self._unary.start()
        self._streams.start()

    async def close(self) -> None:
        await self._streams.close()
        await self._unary.close()

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> Answer:
        body = {"inputs": prompt, "parameters": parameters, "stream": False}
        reply = await self._unary.call_reply("POST", "/generate", body)
        answer = parse_json(reply.body)
        if isinstance(answer, list) and answer:  # TGI's `/` answers a list; /generate does not
            answer = answer[0]
        if not isinstance(answer, dict):
            raise errors.bad_upstream(
                f"unexpected answer from the inference server: {str(answer)[:300]}"
            )
        return Answer(answer, _count(reply.headers.get("x-prompt-tokens")))

    async def stream(
        self, prompt: str, parameters: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]:
        # Details always on: the last event then carries the finish reason and the token counts
        # (the gateway drops them for a client that did not ask).
        params = {**parameters, "details": True}
        body = {"inputs": prompt, "parameters": params, "stream": True}
        response = await self._streams.open("/generate_stream", body)
        final: dict[str, Any] | None = None
        try:
            async for event in self._streams.events(response):
                if final is not None:
                    continue  # nothing follows the final event; read to the end of the body
                if not isinstance(event, dict):
                    raise errors.bad_upstream(f"unexpected event from TGI: {str(event)[:200]}")
                if "error" in event and "token" not in event:
                    # An error event mid-stream (TGI: out of memory, a shard failed).
                    raise errors.GatewayError(
                        502, str(event["error"]), str(event.get("error_type") or "upstream")
                    )
                if event.get("generated_text") is not None:
                    final = event  # yielded once the body has ended: the connection is reusable
                    continue
                yield event
            if final is not None:
                yield final
        finally:
            self._streams.finish(response)

    async def health(self) -> None:
        await self._unary.call("GET", "/health")

    async def info(self) -> dict[str, Any]:
        info = await self._unary.call_json("GET", "/info")
        if not isinstance(info, dict):
            raise errors.bad_upstream(f"TGI's /info is not an object: {str(info)[:200]}")
        return info


def _count(header: str | None) -> int | None:
    try:
        return int(header) if header is not None else None
    except ValueError:
        return None


def _tgi_error(payload: Any, raw: bytes) -> tuple[str, str | None]:
    """TGI's {"error", "error_type"} of a failed answer, or its text when it is not JSON."""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"]), payload.get("error_type")
    return (str(payload)[:500] if payload is not None else text_of(raw)) or "no details", None
