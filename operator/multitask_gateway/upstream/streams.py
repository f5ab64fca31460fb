"""Streams from the inference server: server-sent events over one keep-alive aiohttp session.

Both engines stream the same way (`data: {json}` lines; vLLM ends with `data: [DONE]`), so TGI's
`/generate_stream` and vLLM's `/v1/completions` share this client. The per-request cost of a
library matters less here than for unary calls (it is spread over the tokens), but a library must
still do three things right, and the plain aiohttp client does all three without patches:
- an answer that is not 200 (TGI's 422 for an input that is too long) is read as JSON and passed
  on with its status, not turned into a 502;
- nothing is sent that the gateway was not configured to send: no token picked up from the
  environment or a cached login (huggingface_hub's client adds `HF_TOKEN` to every request);
- a stream abandoned mid-body (the gateway's client hung up) closes its connection, which is what
  tells the inference server to stop generating; a finished one goes back to the pool.
`timeout` bounds connecting and every wait for the next bytes, so a stalled stream fails instead
of hanging.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from .. import errors
from .unary import ErrorReader, text_of


class StreamClient:
    def __init__(self, url: str, timeout: float, read_error: ErrorReader) -> None:
        self.url = url
        self.timeout = timeout
        self._read_error = read_error
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._session = aiohttp.ClientSession(
            # No connection cap: the gateway's per-task concurrency limit is the cap, and a pool
            # limit below it would queue requests invisibly.
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=self.timeout
            ),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def open(self, path: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST `body` and return the 200 answer whose events are to be read; anything else
        raises the GatewayError to answer with."""
        if self._session is None:
            raise RuntimeError("the upstream stream client was not started")
        try:
            response = await self._session.post(
                self.url + path, json=body, headers={"Accept": "text/event-stream"}
            )
        except aiohttp.ServerTimeoutError:
            raise errors.silent(self.url, self.timeout) from None
        except aiohttp.ClientConnectionError as error:
            raise errors.unreachable(self.url, error) from None
        except TimeoutError:
            raise errors.silent(self.url, self.timeout) from None
        if response.status != 200:
            try:
                raw = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                raw = b""
            finally:
                response.release()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = None
            message, error_type = self._read_error(payload, raw)
            raise errors.from_upstream_status(response.status, message, error_type)
        return response

    async def events(self, response: aiohttp.ClientResponse) -> AsyncIterator[Any]:
        """The JSON of each `data:` line as it arrives, until the body or a `[DONE]` ends."""
        ended = False
        while True:
            try:
                line = await asyncio.wait_for(response.content.readline(), self.timeout)
            except TimeoutError:
                raise errors.silent(self.url, self.timeout) from None
            except aiohttp.ClientError as error:
                raise errors.bad_upstream(
                    f"the connection to the inference server failed mid-stream: {error}"
                ) from None
            if not line:
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue  # blank separators, comments, `event:` lines
            data = line[5:].strip()
            if data == b"[DONE]":
                ended = True
                continue  # read on to the end of the body, so the connection can be reused
            if ended:
                continue
            try:
                event = json.loads(data)
            except ValueError:
                raise errors.bad_upstream(
                    f"the inference server sent an event that is not JSON: {text_of(data)[:200]!r}"
                ) from None
            yield event

    @staticmethod
    def finish(response: aiohttp.ClientResponse) -> None:
        if response.content.at_eof():
            response.release()  # back to the pool for the next request
        else:
            response.close()  # abandoned mid-body: closing tells the server to stop
