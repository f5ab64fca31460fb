"""Unary JSON calls to the inference server over http1.py, failures as GatewayErrors.

Shared by the TGI and vLLM clients; each passes how its server words an error answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import errors
from .http1 import Http1Pool, Reply, UpstreamIOError

# (parsed error body or None when it is not JSON, raw body) -> (message, error_type)
ErrorReader = Callable[[Any, bytes], tuple[str, str | None]]


class UnaryClient:
    def __init__(self, url: str, timeout: float, read_error: ErrorReader) -> None:
        self.url = url
        self.timeout = timeout
        self._read_error = read_error
        self._pool: Http1Pool | None = None

    def start(self) -> None:
        self._pool = Http1Pool(self.url, self.timeout)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def call(self, method: str, path: str, body: Any = None) -> bytes:
        """The body of a 200 answer; anything else raises the GatewayError to answer with."""
        return (await self.call_reply(method, path, body)).body

    async def call_reply(self, method: str, path: str, body: Any = None) -> Reply:
        """A 200 answer with its headers; anything else raises the GatewayError."""
        if self._pool is None:
            raise RuntimeError("the upstream client was not started")
        data = b"" if body is None else json.dumps(body).encode()
        try:
            reply = await self._pool.request(method, path, data)
        except UpstreamIOError as error:
            raise self._io_error(error) from None
        if reply.status != 200:
            try:
                payload = json.loads(reply.body)
            except ValueError:
                payload = None
            message, error_type = self._read_error(payload, reply.body)
            raise errors.from_upstream_status(reply.status, message, error_type)
        return reply

    async def call_json(self, method: str, path: str, body: Any = None) -> Any:
        return parse_json(await self.call(method, path, body))

    def _io_error(self, error: UpstreamIOError) -> errors.GatewayError:
        if error.kind == "connect":
            return errors.unreachable(self.url, error)
        if error.kind == "timeout":
            return errors.silent(self.url, self.timeout)
        return errors.bad_upstream(f"the connection to the inference server failed: {error}")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.bad_upstream(
            f"the inference server answered with something that is not JSON: {raw[:200]!r}"
        ) from None


def text_of(raw: bytes) -> str:
    """An error body that is not JSON, as a message."""
    return raw[:500].decode("utf-8", "replace")
