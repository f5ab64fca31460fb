"""A lean keep-alive HTTP/1.1 client for the gateway's unary calls to the inference server.

Why not a library here: the gateway's budget is well under a millisecond per request, and
the client of the unary call is most of it. benchmarks/upstream_clients.py measures the CPU per
sequential `/generate` call of this pool, aiohttp's ClientSession and huggingface_hub's
`AsyncInferenceClient.text_generation` (figures in benchmarks/RESULTS.md, "Gateway upstream
clients": the library clients cost several times more CPU per call). It does only what a unary
call to one known server needs: a request line, a few headers, a body; the answer is parsed by
httptools (llhttp, the parser of uvicorn and Node.js), so no HTTP parsing is hand-written.
Streams go through aiohttp (streams.py), where the per-request cost is spread over many tokens.

Semantics: `timeout` bounds connecting and every wait for the next bytes of the answer (a slow
but moving answer is not cut off). Connections are kept alive and reused, most recent first; the
server closing an idle one is noticed by the event loop and the connection dropped. A request
that fails on a reused connection before any byte of the answer arrived is sent once more on a
fresh connection (the server closed it between two requests: the standard keep-alive race).
A caller that is cancelled (the gateway's client hung up) closes its connection, which tells the
server to stop working on the answer.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_IDLE = 256  # idle connections kept; beyond this a finished connection is closed


class UpstreamIOError(Exception):
    """The exchange failed below HTTP: `kind` is connect, timeout or protocol."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Http1Pool:
    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the upstream URL '{url}' is not an http(s) URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.timeout = timeout
        default_port = self.port == (443 if self.ssl else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._host_header = (host if default_port else f"{host}:{self.port}").encode("idna")
        self._idle: list[_Connection] = []
        self._closed = False

    async def request(
        self, method: str, path: str, body: bytes = b"", content_type: str = "application/json"
    ) -> Reply:
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nAccept: application/json\r\n" % (
            method.encode(), (self.base_path + path).encode(), self._host_header
        )
        if body or method == "POST":
            head += b"Content-Type: %s\r\nContent-Length: %d\r\n" % (content_type.encode(),
                                                                     len(body))
        message = head + b"\r\n" + body
        for attempt in (1, 2):
            connection, reused = await self._acquire()
            try:
                reply = await connection.exchange(message, self.timeout)
            except _Stale:
                if reused and attempt == 1:
                    continue
                raise UpstreamIOError(
                    "protocol", "the inference server closed the connection without answering"
                ) from None
            except BaseException:
                connection.close()  # unknown state (timeout, bad answer, cancelled caller)
                raise
            self._release(connection)
            return reply
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _acquire(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable():
                return connection, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise UpstreamIOError(
                "connect", f"connecting took longer than {self.timeout:g} s"
            ) from None
        except OSError as error:
            raise UpstreamIOError("connect", str(error) or type(error).__name__) from None
        return connection, False

    def _release(self, connection: _Connection) -> None:
        if connection.usable() and not self._closed and len(self._idle) < MAX_IDLE:
            self._idle.append(connection)
        else:
            connection.close()


class _Stale(Exception):
    """The connection ended before any byte of the answer."""


class _Connection(asyncio.Protocol):
    """One TCP connection; httptools calls the on_* methods while it parses the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Reply] | None = None
        self.keep_alive = False
        self.lost = False
        self.received = False
        self.last_bytes = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def usable(self) -> bool:
        return not self.lost and self.keep_alive and self.transport is not None \
            and not self.transport.is_closing()

    def close(self) -> None:
        self.keep_alive = False
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, message: bytes, timeout: float) -> Reply:
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.received = False
        self.keep_alive = False
        self.headers, self.body = {}, []
        self.last_bytes = loop.time()
        self.timer = loop.call_at(self.last_bytes + timeout, self._check_timeout, timeout)
        assert self.transport is not None
        try:
            self.transport.write(message)
            return await self.waiter
        finally:
            self.timer.cancel()
            self.waiter = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        self.last_bytes = asyncio.get_running_loop().time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamIOError("protocol", f"unreadable HTTP answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.received:
            self._fail(_Stale())
        else:
            reason = f": {exc}" if exc else ""
            self._fail(UpstreamIOError(
                "protocol", f"the inference server closed the connection mid-answer{reason}"
            ))

    # ------------------------------------------------------------------ httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            waiter.set_result(Reply(self.parser.get_status_code(), self.headers, body))

    # ------------------------------------------------------------------ helpers

    def _fail(self, error: Exception) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def _check_timeout(self, timeout: float) -> None:
        """Fires `timeout` after the request or the last bytes; re-arms while bytes arrive."""
        loop = asyncio.get_running_loop()
        due = self.last_bytes + timeout
        if loop.time() < due:
            self.timer = loop.call_at(due, self._check_timeout, timeout)
            return
        self._fail(UpstreamIOError("timeout", f"no byte of the answer for {timeout:g} s"))
