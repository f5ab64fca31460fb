"""The gateway answers every bad request itself, with a 4xx naming the problem: deep or huge
JSON, non-finite or out-of-range parameters, text no engine can encode, slow or malformed
HTTP, and requests through one task's old Service for another task (issue: hardening)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from multitask_gateway.app import Gateway
from multitask_gateway.config import ConfigError, load_config, parse_config
from multitask_gateway.serve import server_options
from multitask_gateway.upstream import make_upstream

from tests.serving.conftest import CONFIG


async def raw(gw, path: str, data: bytes, **headers) -> tuple[int, dict]:
    async with gw.session.post(gw.url + path, data=data, headers={
            "Content-Type": "application/json", **headers}) as response:
        return response.status, await response.json(content_type=None)


class TestBodies:
    @pytest.mark.parametrize(("data", "message"), [
        (b'{"inputs": ' + b"[" * 60000 + b"]" * 60000 + b"}", "nests deeper than 64 levels"),
        (b'{"a": ' * 12000 + b"1" + b"}" * 12000, "nests deeper than 64 levels"),
        (b'{"inputs": "x", "a": ' + b"[" * 70 + b"]" * 70 + b"}", "nests deeper than 64 levels"),
        (b'{"inputs": "x", "parameters": {"seed": ' + b"9" * 5000 + b"}}",
         "holds an integer of 5000 digits (at most 20)"),
        (b'{"inputs": "x", "parameters": {"temperature": NaN}}', "holds NaN"),
        (b'{"inputs": "x", "parameters": {"temperature": -Infinity}}', "holds -Infinity"),
        (b'{"inputs": "\\ud800"}', "inputs: not valid Unicode (a lone surrogate"),
        (b'{"inputs": "x", "parameters": {"stop": ["\\udfff"]}}', "parameters.stop[0]: not valid"),
        (b'{"inputs": "\xff\xfe"}', "not valid JSON"),
    ])
    async def test_bad_json_is_a_400_without_a_traceback(self, fake_tgi, start_gateway, data,
                                                         message, caplog):
        fake, url = fake_tgi
        gw = await start_gateway(url, max_body_bytes=1 << 20)
        with caplog.at_level(logging.DEBUG):
            status, body = await raw(gw, "/tasks/summary/generate", data)
        assert status == 400, body
        assert message in body["error"]
        assert body["error_type"] == "bad_request"
        assert "Traceback" not in caplog.text
        assert fake.requests == []

    async def test_the_openai_api_names_the_parameter(self, tgi_gateway):
        fake, gw = tgi_gateway
        status, body = await raw(gw, "/v1/chat/completions", b'{"model": "summary", '
                                 b'"messages": [{"role": "user", "content": "\\ud83d"}]}')
        assert status == 400
        assert body["error"]["param"] == "messages[0].content"
        assert fake.requests == []

    @pytest.mark.parametrize(("parameters", "message"), [
        ({"temperature": 0}, "parameters.temperature must be > 0"),
        ('{"temperature": 1e999}', "parameters.temperature must be a finite number"),
        ('{"top_p": -1e400}', "parameters.top_p must be a finite number"),
        ({"top_k": -1}, "parameters.top_k must be >= 1"),
        ({"top_p": -1}, "parameters.top_p must be > 0"),
        ({"top_p": 1.5}, "parameters.top_p must be <= 1"),
        ({"typical_p": 0}, "parameters.typical_p must be > 0"),
        ({"repetition_penalty": 0}, "parameters.repetition_penalty must be > 0"),
        ({"frequency_penalty": 3}, "parameters.frequency_penalty must be <= 2"),
        ({"seed": -1}, "parameters.seed must be >= 0"),
        ({"truncate": 0}, "parameters.truncate must be >= 1"),
    ])
    async def test_parameters_out_of_range_never_go_upstream(self, tgi_gateway, parameters,
                                                             message):
        fake, gw = tgi_gateway
        if isinstance(parameters, str):  # JSON text: 1e999 parses as infinity
            status, body = await raw(gw, "/tasks/summary/generate",
                                     b'{"inputs": "x", "parameters": ' + parameters.encode() + b"}")
        else:
            status, body = await gw.post("/tasks/summary/generate",
                                         {"inputs": "x", "parameters": parameters})
        assert (status, body["error_type"]) == (422, "validation")
        assert body["error"].startswith(message)
        assert fake.requests == []

    async def test_a_body_that_does_not_arrive_is_a_408(self, fake_tgi, start_gateway):
        _, url = fake_tgi
        gw = await start_gateway(url, body_timeout_seconds=0.3)
        host, port = gw.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /tasks/summary/generate HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"in")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"limits.bodyTimeoutSeconds" in answer


async def serve_gateway(idle_timeout: float):
    from aiohttp import web

    config = parse_config(CONFIG)
    gateway = Gateway(config, make_upstream("tgi", "http://127.0.0.1:9", 5, "support"))
    runner = web.AppRunner(gateway.app(), **server_options(idle_timeout))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][:2]


class TestConnections:
    async def test_slow_headers_and_idle_connections_are_closed(self):
        runner, (host, port) = await serve_gateway(idle_timeout=0.5)
        try:
            streams = [await asyncio.open_connection(host, port) for _ in range(20)]
            for i, (_, writer) in enumerate(streams):
                # Half dribble a request line, half say nothing at all.
                if i % 2:
                    writer.write(b"POST /generate HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    await writer.drain()
            for reader, writer in streams:
                assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server
                writer.close()
        finally:
            await runner.cleanup()

    async def test_a_malformed_request_is_one_log_line(self, caplog):
        runner, (host, port) = await serve_gateway(idle_timeout=5)
        try:
            with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
                for garbage in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
                                b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"):
                    reader, writer = await asyncio.open_connection(host, port)
                    writer.write(garbage)
                    await writer.drain()
                    answer = await asyncio.wait_for(reader.read(), 10)
                    writer.close()
                    assert answer.split(b" ", 2)[1] == b"400", answer
        finally:
            await runner.cleanup()
        records = [r for r in caplog.records if r.name == "aiohttp.server"]
        assert records and all("\n" not in r.getMessage() for r in records)
        assert all(r.exc_info is None for r in records)
        assert "malformed HTTP request refused with 400" in records[0].getMessage()


class TestCrossTask:
    async def test_an_old_service_reaches_its_own_task_only(self, tgi_gateway):
        fake, gw = tgi_gateway
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"},
                                     headers={"Host": "intent-svc"})
        assert status == 403 and body["error_type"] == "forbidden"
        assert "came through task 'intent''s Service 'intent-svc'" in body["error"]
        status, _ = await gw.post("/generate", {"inputs": "x"},
                                  headers={"Host": "intent-svc", "X-Task": "summary"})
        assert status == 403
        status, body = await gw.post("/v1/chat/completions", {
            "model": "summary", "messages": [{"role": "user", "content": "x"}]},
            headers={"Host": "intent-svc.shop.svc"})
        assert status == 403 and body["error"]["code"] == "forbidden"
        assert fake.requests == []
        fake.text = "refund"
        status, _ = await gw.post("/tasks/intent/generate", {"inputs": "x"},
                                  headers={"Host": "intent-svc"})
        assert status == 200  # its own task, named explicitly
        fake.text = "generated"
        status, _ = await gw.post("/tasks/summary/generate", {"inputs": "x"},
                                  headers={"Host": "support-gateway.shop.svc"})
        assert status == 200  # the gateway's own Service reaches every task

    async def test_allowed_by_the_config(self, fake_tgi, start_gateway):
        fake, url = fake_tgi
        gw = await start_gateway(url)
        gw.gateway.config = gw.gateway.config.replace(cross_task_access=True)
        status, _ = await gw.post("/tasks/summary/generate", {"inputs": "x"},
                                  headers={"Host": "intent-svc"})
        assert status == 200


class TestConfigFile:
    @pytest.mark.parametrize(("content", "message"), [
        (b'{"tasks": [{"name": "caf\xe9"}]}', "not UTF-8 text: byte 0xe9 at offset 24"),
        (b'{"a": ' * 50000 + b"1" + b"}" * 50000, "the config nests deeper than 64 levels"),
        (b'{"tasks": [], "limits": {"maxNewTokens": ' + b"1" * 5000 + b"}}",
         "the config holds an integer of 5000 digits"),
        (b'{"tasks": [{"name": "\\ud800"}]}', "tasks[0].name: not valid Unicode"),
        (b"{", "gateway.json:1: not valid JSON"),
        (b" " * (1 << 20) + b"{}", "at most 1048576 (1 MiB, a ConfigMap's limit)"),
    ])
    def test_one_line_per_problem(self, tmp_path, content, message):
        path = tmp_path / "gateway.json"
        path.write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        text = str(caught.value)
        assert text.startswith(str(path)) and message in text
        assert "\n" not in text and len(text) < 300

    def test_cross_task_access_is_a_boolean(self, tmp_path):
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps({**CONFIG, "crossTaskAccess": "yes"}))
        with pytest.raises(ConfigError, match='crossTaskAccess must be true or false, got "yes"'):
            load_config(path)
        path.write_text(json.dumps({**CONFIG, "crossTaskAccess": True}))
        assert load_config(path).cross_task_access is True
