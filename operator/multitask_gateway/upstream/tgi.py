"""TGI: unary calls as TGI's own JSON over upstream/http1.py, streams through huggingface_hub.

Unary calls (`/generate`, `/health`, `/info`) are where the gateway's own cost per request
shows: a classification answer takes the inference server a few milliseconds and the gateway
should add well under one. `AsyncInferenceClient.text_generation` costs about 1.4 ms of CPU
per call on the benchmark's cores, nine times the lean pool (httpx request and response models,
a token lookup in files, a thread hop per response; benchmarks/upstream_clients.py). So unary
calls post the body it would send (`inputs`, `parameters` with `grammar` / `adapter_id` /
`details`, `stream: false`) to `/generate` through the lean pool, and read TGI's
`{"error", "error_type"}` answers the way it reads them.

Streams (`/generate_stream`) go through `AsyncInferenceClient` (its SSE parsing and error
events), where the per-request cost is spread over the tokens. AsyncInferenceClient enters every
streamed response into its own exit stack and releases them only on `close()`, so one long-lived
client would keep a reference to every stream it ever served. Instead each stream gets a
throwaway AsyncInferenceClient bound to one shared httpx pool (its `_async_client`, which the
client creates lazily and otherwise owns): keep-alive connections are reused, and closing the
per-request client releases exactly that stream, also when the gateway's client disconnects
mid-stream. The pool's wire is aiohttp (transport.py): httpx's own HTTP/1.1 parser costs more
CPU per request than the rest of the gateway. The client posts to the base URL (TGI's `/` route,
a stream when `stream` is set); `timeout` bounds connecting and every wait for the next bytes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import (
    GenerationError,
    HfHubHTTPError,
    IncompleteGenerationError,
    InferenceTimeoutError,
    OverloadedError,
    TextGenerationError,
    UnknownError,
    ValidationError,
)

from .. import errors
from .transport import AiohttpTransport
from .unary import UnaryClient, text_of

ERROR_TYPES: dict[type, str] = {
    ValidationError: "validation",
    GenerationError: "generation",
    OverloadedError: "overloaded",
    IncompleteGenerationError: "incomplete_generation",
    UnknownError: "unknown",
}


class TgiUpstream:
    engine = "tgi"

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._pool: httpx2.AsyncClient | None = None
        self._unary = UnaryClient(self.url, timeout, _tgi_error)

    async def start(self) -> None:
        self._pool = httpx2.AsyncClient(
            timeout=httpx2.Timeout(self.timeout), transport=AiohttpTransport()
        )
        self._unary.start()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        await self._unary.close()

    def _client(self) -> AsyncInferenceClient:
        if self._pool is None:
            raise RuntimeError("TgiUpstream.start() was not awaited")
        client = AsyncInferenceClient(base_url=self.url, timeout=self.timeout)
        client._async_client = self._pool  # see the module docstring
        return client

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> dict[str, Any]:
        body = {"inputs": prompt, "parameters": parameters, "stream": False}
        answer = await self._unary.call_json("POST", "/generate", body)
        if isinstance(answer, list) and answer:  # TGI's `/` answers a list; /generate does not
            answer = answer[0]
        if not isinstance(answer, dict):
            raise errors.bad_upstream(
                f"unexpected answer from the inference server: {str(answer)[:300]}"
            )
        return answer

    async def stream(
        self, prompt: str, parameters: dict[str, Any]
    ) -> AsyncIterator[dict[str, Any]]:
        params = dict(parameters)
        params.pop("details", None)  # always on: events without details have no token ids
        client = self._client()
        try:
            try:
                events = await client.text_generation(prompt, stream=True, details=True, **params)
                async for event in events:
                    yield dict(event)
            except Exception as error:  # noqa: BLE001
                raise await self._translate(error) from None
        finally:
            await client.close()

    async def health(self) -> None:
        await self._unary.call("GET", "/health")

    async def info(self) -> dict[str, Any]:
        return await self._unary.call_json("GET", "/info")

    async def _translate(self, error: Exception) -> errors.GatewayError:
        """What went wrong, as the client of the gateway should hear it."""
        if isinstance(error, errors.GatewayError):
            return error
        if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout):
            return errors.unreachable(self.url, error)
        if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException):
            return errors.silent(self.url, self.timeout)
        if isinstance(error, TextGenerationError):
            cause = error.__cause__
            status = getattr(getattr(cause, "response", None), "status_code", None)
            error_type = next((t for c, t in ERROR_TYPES.items() if isinstance(error, c)), None)
            if status is None:  # an error event in the middle of a stream
                return errors.GatewayError(502, str(error), error_type or "upstream")
            return errors.from_upstream_status(status, str(error), error_type)
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            response = error.response
            message, error_type = await _error_body(response)
            return errors.from_upstream_status(response.status_code, message, error_type)
        if isinstance(error, httpx2.HTTPError):
            return errors.bad_upstream(f"the connection to the inference server failed: {error!r}")
        return errors.bad_upstream(f"unexpected answer from the inference server: {error!r}")


def _tgi_error(payload: Any, raw: bytes) -> tuple[str, str | None]:
    """TGI's {"error", "error_type"} of a failed answer, or its text when it is not JSON."""
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"]), payload.get("error_type")
    return (str(payload)[:500] if payload is not None else text_of(raw)) or "no details", None


async def _error_body(response: httpx2.Response) -> tuple[str, str | None]:
    """TGI's {"error", "error_type"} from a failed response, read even when it was streamed."""
    try:
        await response.aread()
        payload = response.json()
        return str(payload.get("error") or payload), payload.get("error_type")
    except Exception:  # noqa: BLE001 - not JSON: say what it was
        try:
            return response.text[:500] or response.reason_phrase, None
        except Exception:  # noqa: BLE001
            return response.reason_phrase, None
