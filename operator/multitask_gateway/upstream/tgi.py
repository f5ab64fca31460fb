"""TGI through `huggingface_hub.AsyncInferenceClient` (grammar, adapter_id, streaming).

Connection reuse: AsyncInferenceClient enters every streamed response into its own exit stack
and releases them only on `close()`, so one long-lived client would keep a reference to every
stream it ever served. Instead each request gets a throwaway AsyncInferenceClient bound to one
shared httpx pool (its `_async_client`, which the client creates lazily and otherwise owns):
keep-alive connections are reused across requests, and closing the per-request client releases
exactly that request's stream, also when the client of the gateway disconnects mid-stream.
The pool's wire is aiohttp (transport.py): httpx's own HTTP/1.1 parser costs more CPU per
request than the rest of the gateway.

The client posts to the base URL (TGI's `/` route, which is /generate or /generate_stream
depending on `stream`); `timeout` bounds connecting and every wait for the next bytes.
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

    async def start(self) -> None:
        self._pool = httpx2.AsyncClient(
            timeout=httpx2.Timeout(self.timeout), transport=AiohttpTransport()
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    def _client(self) -> AsyncInferenceClient:
        if self._pool is None:
            raise RuntimeError("TgiUpstream.start() was not awaited")
        client = AsyncInferenceClient(base_url=self.url, timeout=self.timeout)
        client._async_client = self._pool  # see the module docstring
        return client

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> dict[str, Any]:
        params = dict(parameters)
        details = bool(params.pop("details", False))
        client = self._client()
        try:
            output = await client.text_generation(prompt, details=details, **params)
        except Exception as error:  # noqa: BLE001 - every failure becomes a GatewayError
            raise await self._translate(error) from None
        finally:
            await client.close()
        if details:
            return dict(output)
        return {"generated_text": output}

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
        await self._get("/health")

    async def info(self) -> dict[str, Any]:
        return (await self._get("/info")).json()

    async def _get(self, path: str) -> httpx2.Response:
        if self._pool is None:
            raise RuntimeError("TgiUpstream.start() was not awaited")
        try:
            response = await self._pool.get(self.url + path)
        except Exception as error:  # noqa: BLE001
            raise await self._translate(error) from None
        if response.status_code != 200:
            raise errors.from_upstream_status(response.status_code, response.text[:500], None)
        return response

    async def _translate(self, error: Exception) -> errors.GatewayError:
        """What went wrong, as the client of the gateway should hear it."""
        if isinstance(error, errors.GatewayError):
            return error
        if isinstance(error, httpx2.ConnectError | httpx2.ConnectTimeout):
            return errors.unavailable(f"the inference server at {self.url} is unreachable: {error}")
        if isinstance(error, InferenceTimeoutError | httpx2.TimeoutException):
            return errors.timeout(
                f"the inference server at {self.url} sent nothing for {self.timeout:g} s"
            )
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
