"""The gateway's lean HTTP/1.1 client (upstream/http1.py) against a raw scripted TCP server, so
that keep-alive, the idle-close race, chunked answers, timeouts and cancellation are exercised
byte by byte."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from multitask_gateway.upstream.http1 import Http1Pool, UpstreamIOError

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class RawServer:
    """Runs `script(reader, writer, connection_number)` for every connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_peer = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        """One request (head and Content-Length body); b"" when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self.closed_by_peer.set()
            return b""
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


def answer(body: bytes = b'{"ok": true}', status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (status.encode(), len(body), extra, body))


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Script], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(script: Script) -> RawServer:
        server = RawServer(script)
        server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()


async def keep_answering(server: RawServer, reader, writer) -> None:
    while await server.read_request(reader):
        writer.write(answer())
        await writer.drain()


async def test_requests_reuse_one_kept_alive_connection(raw_server):
    server = await raw_server(lambda r, w, n: keep_answering(server, r, w))
    pool = Http1Pool(server.url + "/base/", timeout=5)
    for _ in range(5):
        reply = await pool.request("POST", "/generate", b'{"inputs": "x"}')
        assert (reply.status, json.loads(reply.body)) == (200, {"ok": True})
    await pool.close()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /base/generate HTTP/1.1\r\n")
    host, port = server.url.removeprefix("http://").split(":")
    assert f"Host: {host}:{port}\r\n".encode() in first
    assert b"Content-Length: 15\r\n" in first and first.endswith(b'{"inputs": "x"}')


async def test_concurrent_requests_open_more_connections_and_keep_them(raw_server):
    async def slow(reader, writer, n):
        while await server.read_request(reader):
            await asyncio.sleep(0.05)
            writer.write(answer())

    server = await raw_server(slow)
    pool = Http1Pool(server.url, timeout=5)
    for _ in range(2):
        replies = await asyncio.gather(*(pool.request("GET", "/health") for _ in range(4)))
        assert [r.status for r in replies] == [200] * 4
    await pool.close()
    assert server.connections == 4


async def test_a_server_that_closes_idle_connections_is_not_a_failure(raw_server):
    async def one_per_connection(reader, writer, n):
        await server.read_request(reader)
        writer.write(answer())  # says keep-alive (HTTP/1.1 default), then closes anyway
        await writer.drain()

    server = await raw_server(one_per_connection)
    pool = Http1Pool(server.url, timeout=5)
    for _ in range(3):
        assert (await pool.request("GET", "/info")).status == 200
        await asyncio.sleep(0.05)  # the loop notices the close: the connection is dropped
    await pool.close()
    assert server.connections == 3


async def test_the_keep_alive_race_is_retried_once_on_a_fresh_connection(raw_server):
    async def race(reader, writer, n):
        await server.read_request(reader)
        writer.write(answer())
        await writer.drain()
        if n == 1:  # the second request on this connection: closed without an answer
            await server.read_request(reader)
            return
        await keep_answering(server, reader, writer)

    server = await raw_server(race)
    pool = Http1Pool(server.url, timeout=5)
    assert (await pool.request("POST", "/generate", b"{}")).status == 200
    assert (await pool.request("POST", "/generate", b"{}")).status == 200
    await pool.close()
    assert server.connections == 2
    assert len(server.requests) == 3  # the raced request was sent twice, answered once


async def test_a_fresh_connection_closed_without_an_answer_fails(raw_server):
    async def hang_up(reader, writer, n):
        await server.read_request(reader)

    server = await raw_server(hang_up)
    pool = Http1Pool(server.url, timeout=5)
    with pytest.raises(UpstreamIOError, match="closed the connection without answering") as error:
        await pool.request("POST", "/generate", b"{}")
    assert error.value.kind == "protocol"
    assert server.connections == 1  # not retried: the connection was not a reused one


async def test_a_chunked_answer_is_decoded_and_close_is_respected(raw_server):
    async def chunked(reader, writer, n):
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n")
        await writer.drain()

    server = await raw_server(chunked)
    pool = Http1Pool(server.url, timeout=5)
    reply = await pool.request("GET", "/info")
    assert json.loads(reply.body) == {"a": 1}
    assert reply.headers["transfer-encoding"] == "chunked"
    assert (await pool.request("GET", "/info")).status == 200
    assert server.connections == 2  # Connection: close was not reused
    await pool.close()


async def test_error_statuses_are_replies_not_exceptions(raw_server):
    async def refuse(reader, writer, n):
        while await server.read_request(reader):
            writer.write(answer(b'{"error": "no", "error_type": "validation"}',
                                "422 Unprocessable Entity"))

    server = await raw_server(refuse)
    pool = Http1Pool(server.url, timeout=5)
    reply = await pool.request("POST", "/generate", b"{}")
    assert reply.status == 422 and json.loads(reply.body)["error_type"] == "validation"
    assert (await pool.request("POST", "/generate", b"{}")).status == 422
    assert server.connections == 1
    await pool.close()


async def test_silence_times_out_but_a_slow_moving_answer_does_not(raw_server):
    async def trickle(reader, writer, n):
        await server.read_request(reader)
        if n == 1:
            await asyncio.sleep(5)  # silent
            return
        body = b'{"slow": "answer"}'
        data = answer(body)
        step = len(data) // 6 + 1
        for i in range(0, len(data), step):  # 0.25 s gaps, 1.5 s in all: over the timeout
            writer.write(data[i:i + step])
            await writer.drain()
            await asyncio.sleep(0.25)

    server = await raw_server(trickle)
    pool = Http1Pool(server.url, timeout=1)
    start = time.monotonic()
    with pytest.raises(UpstreamIOError, match="no byte of the answer for 1 s") as error:
        await pool.request("POST", "/generate", b"{}")
    assert error.value.kind == "timeout"
    assert 0.9 < time.monotonic() - start < 4
    start = time.monotonic()
    reply = await pool.request("POST", "/generate", b"{}")
    assert json.loads(reply.body) == {"slow": "answer"}
    assert time.monotonic() - start > 1  # longer than the timeout in all
    await pool.close()


async def test_nothing_listening_is_a_connect_error():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(UpstreamIOError) as error:
        await pool.request("GET", "/health")
    assert error.value.kind == "connect"


async def test_a_cancelled_caller_closes_its_connection(raw_server):
    async def hold(reader, writer, n):
        await server.read_request(reader)
        await server.read_request(reader)  # returns b"" when the client closes

    server = await raw_server(hold)
    pool = Http1Pool(server.url, timeout=30)
    call = asyncio.create_task(pool.request("POST", "/generate", b"{}"))
    while not server.requests:
        await asyncio.sleep(0.01)
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    await asyncio.wait_for(server.closed_by_peer.wait(), 5)  # the server learns at once
    await pool.close()


async def test_an_unreadable_answer_is_a_protocol_error(raw_server):
    async def garbage(reader, writer, n):
        await server.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server = await raw_server(garbage)
    pool = Http1Pool(server.url, timeout=5)
    with pytest.raises(UpstreamIOError, match="unreadable HTTP answer") as error:
        await pool.request("GET", "/health")
    assert error.value.kind == "protocol"
    await pool.close()


def test_only_http_urls_are_accepted():
    with pytest.raises(ValueError, match="not an http"):
        Http1Pool("unix:///tmp/socket", timeout=1)
    assert Http1Pool("https://tgi.example", timeout=1).port == 443
