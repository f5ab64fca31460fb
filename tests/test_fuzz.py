"""A fuzz suite of our own, held to one invariant: whatever arrives, the answer is a clear
refusal, never a traceback, never a 5xx of the gateway's own, and one line per problem.

- the gateway: the real aiohttp app on loopback, in front of an upstream that always answers
  well (a label of the grammar it is sent), so any 5xx is the gateway's own; generated JSON
  bodies, mutated TGI and OpenAI requests, raw bytes, odd paths and headers;
- the spec loader (`mtm validate`'s): generated YAML and mutations of a valid model;
- the data loader: generated JSON Lines;
- the gateway config: generated JSON and bytes.

Deterministic (derandomize) and bounded, so CI sees the same cases on every run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import MINIMAL_SPEC, manifest
from tests.serving.conftest import CONFIG


def fuzz(examples: int) -> settings:
    return settings(derandomize=True, deadline=None, database=None, max_examples=examples,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

JSON_LEAF = (st.none() | st.booleans() | st.integers() | st.text(max_size=20)
             | st.floats(allow_nan=True, allow_infinity=True))
# Values that broke engines and parsers before: non-finite and out-of-range numbers, lone
# surrogates, empty strings, huge integers.
EDGE = st.sampled_from([float("nan"), float("inf"), float("-inf"), -1, 0, 0.0, -0.5, 1e308,
                        2**64, -(2**63), "", "\ud800", "a\udfffb", [], {}])
JSON_LEAF = JSON_LEAF | EDGE
JSON = st.recursive(JSON_LEAF, lambda children: st.lists(children, max_size=4)
                    | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=12)
PARAMETER_NAMES = st.sampled_from([
    "temperature", "top_k", "top_p", "typical_p", "max_new_tokens", "seed", "stop", "grammar",
    "details", "do_sample", "repetition_penalty", "frequency_penalty", "truncate", "best_of",
    "adapter_id", "return_full_text", "watermark", "top_n_tokens", "colour"])


# --------------------------------------------------------------------------- the gateway


class _Server:
    """The gateway and a well-behaved upstream, on loopback, in a thread of their own."""

    def __init__(self) -> None:
        self.port = 0
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        from aiohttp import web
        from multitask_gateway.app import Gateway
        from multitask_gateway.config import parse_config
        from multitask_gateway.constraints import literal_alternatives
        from multitask_gateway.serve import server_options
        from multitask_gateway.upstream import make_upstream

        def strict(name: str) -> Any:
            raise ValueError(name)

        async def generate(request: web.Request) -> web.StreamResponse:
            # Like TGI's router (serde): NaN, Infinity or a lone surrogate fail it with a 500,
            # which the gateway's client would see as a 502. The gateway must never send them.
            raw = await request.read()
            try:
                body = json.loads(raw, parse_constant=strict)
                json.dumps(body, ensure_ascii=False).encode("utf-8")
            except ValueError:
                return web.Response(status=500, text="unreadable request")
            params = body.get("parameters") or {}
            if any(isinstance(v, float) and not -1e300 < v < 1e300 for v in params.values()):
                return web.Response(status=500, text="non-finite parameter")
            grammar = (body.get("parameters") or {}).get("grammar") or {}
            text = "generated"
            if grammar.get("type") == "regex":
                text = literal_alternatives(grammar["value"])[0]
            if not body.get("stream"):
                return web.json_response(
                    {"generated_text": text, "details": {"finish_reason": "eos_token",
                                                         "generated_tokens": 1}},
                    headers={"x-prompt-tokens": "3"})
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            event = {"index": 1, "token": {"id": 1, "text": text, "logprob": 0.0,
                                           "special": False},
                     "generated_text": text, "details": {"finish_reason": "eos_token",
                                                         "generated_tokens": 1,
                                                         "input_length": 3}}
            await response.write(b"data:" + json.dumps(event).encode() + b"\n\n")
            await response.write_eof()
            return response

        async def ok(request: web.Request) -> web.Response:
            return web.json_response({"model_id": "fuzz"})

        upstream_app = web.Application()
        upstream_app.add_routes([web.post("/generate", generate),
                                 web.post("/generate_stream", generate),
                                 web.get("/health", ok), web.get("/info", ok)])
        self._upstream = web.AppRunner(upstream_app)
        await self._upstream.setup()
        site = web.TCPSite(self._upstream, "127.0.0.1", 0)
        await site.start()
        upstream_port = self._upstream.addresses[0][1]
        config = parse_config({**CONFIG, "limits": {**CONFIG["limits"], "maxBodyBytes": 65536,
                                                    "maxConcurrencyPerTask": 1000}})
        gateway = Gateway(config, make_upstream("tgi", f"http://127.0.0.1:{upstream_port}", 5,
                                                "support"))
        self._gateway = web.AppRunner(gateway.app(), **server_options(5))
        await self._gateway.setup()
        site = web.TCPSite(self._gateway, "127.0.0.1", 0)
        await site.start()
        self.port = self._gateway.addresses[0][1]

    def __enter__(self) -> _Server:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *_: Any) -> None:
        async def stop() -> None:
            await self._gateway.cleanup()
            await self._upstream.cleanup()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def send(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[
            int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def server():
    with _Server() as running:
        yield running


class _NoTracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self.bad.append(f"{record.name}: {record.getMessage()[:200]}")


@pytest.fixture(scope="module")
def tracebacks():
    handler = _NoTracebacks()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler.bad
    root.removeHandler(handler)


def check_answer(status: int, body: bytes, what: Any) -> None:
    assert status < 500, f"{status} for {what!r}: {body[:300]!r}"
    if status >= 400 and body:
        error = json.loads(body)["error"]
        message = error["message"] if isinstance(error, dict) else error
        assert isinstance(message, str) and message, body[:300]


PATHS = st.sampled_from([
    "/generate", "/generate_stream", "/", "/tasks/intent/generate", "/tasks/summary/generate",
    "/tasks/summary/generate_stream", "/v1/tasks/intent", "/tasks/nope/generate",
    "/v1/chat/completions", "/v1/completions", "/tasks/sentiment/v1/chat/completions"])
HEADERS = st.fixed_dictionaries({}, optional={
    "X-Task": st.sampled_from(["intent", "summary", "nope", "", " intent "]),
    "Host": st.sampled_from(["intent-svc", "summary-svc.ml.svc:80", "[::1]:80", "x" * 200])})


@fuzz(250)
@given(path=PATHS, body=JSON, headers=HEADERS)
def test_any_json_body(server, tracebacks, path, body, headers):
    data = json.dumps(body).encode()
    status, answer = server.send("POST", path, data, {"Content-Type": "application/json",
                                                      **headers})
    check_answer(status, answer, (path, body))
    assert tracebacks == []


@fuzz(250)
@given(task=st.sampled_from(["intent", "summary", "sentiment"]), inputs=JSON,
       parameters=st.dictionaries(PARAMETER_NAMES, st.one_of(EDGE, JSON_LEAF, JSON),
                                  max_size=4),
       stream=st.booleans())
def test_tgi_requests_with_mutated_parameters(server, tracebacks, task, inputs, parameters,
                                              stream):
    path = f"/tasks/{task}/generate" + ("_stream" if stream else "")
    body = json.dumps({"inputs": inputs, "parameters": parameters}).encode()
    status, answer = server.send("POST", path, body, {"Content-Type": "application/json"})
    check_answer(status, answer, (path, inputs, parameters))
    assert tracebacks == []


CHAT_FIELDS = st.sampled_from([
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stop", "seed", "user",
    "stream", "stream_options", "response_format", "tools", "tool_choice", "logprobs",
    "logit_bias", "presence_penalty", "frequency_penalty", "model", "messages"])
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant", "x"]),
                                 "content": st.one_of(EDGE, JSON)})


@fuzz(250)
@given(model=st.sampled_from(["intent", "summary", "sentiment", "intent-svc", "gpt-4", 5]),
       messages=st.lists(MESSAGE, max_size=3),
       extra=st.dictionaries(CHAT_FIELDS, st.one_of(EDGE, JSON), max_size=3),
       completions=st.booleans())
def test_openai_requests(server, tracebacks, model, messages, extra, completions):
    body: dict[str, Any] = {"model": model, **extra}
    if completions:
        body.setdefault("prompt", messages[0]["content"] if messages else "hello")
        path = "/v1/completions"
    else:
        body.setdefault("messages", messages)
        path = "/v1/chat/completions"
    status, answer = server.send("POST", path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    check_answer(status, answer, body)
    if status >= 400:
        assert "error" in json.loads(answer)
    assert tracebacks == []


@fuzz(150)
@given(data=st.binary(max_size=300), path=PATHS)
def test_raw_bytes(server, tracebacks, data, path):
    status, answer = server.send("POST", path, data, {"Content-Type": "application/json"})
    check_answer(status, answer, data)
    assert tracebacks == []


def test_pathological_bodies(server, tracebacks):
    for data in (b"[" * 60000, b'{"a":' * 12000 + b"1" + b"}" * 12000, b"9" * 5000,
                 b'{"inputs": "x", "parameters": {"temperature": 1e999}}',
                 b'{"inputs": "\\ud800\\udc00\\ud800"}', b"\xef\xbb\xbf{}"):
        for path in ("/tasks/summary/generate", "/v1/chat/completions"):
            status, answer = server.send("POST", path, data,
                                         {"Content-Type": "application/json"})
            check_answer(status, answer, data[:40])
    assert tracebacks == []


# --------------------------------------------------------------------------- files


def _one_line_each(problems: list[Any]) -> None:
    for problem in problems:
        text = str(problem)
        assert "\n" not in text and len(text) < 1200, text[:300]


@fuzz(200)
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(
    lambda b: b.decode("latin-1")))
def test_spec_loader_on_any_text(tmp_path_factory, text):
    from multitask_operator.loader import load_file

    path = tmp_path_factory.mktemp("spec") / "model.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    result = load_file(path)
    _one_line_each(result.problems)
    assert result.problems or result.documents


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


def _set(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    document[head] = _set(document[head], rest, value)
    return document


MODEL = manifest(json.loads(json.dumps(MINIMAL_SPEC)))
MODEL_PATHS = _paths(MODEL)


@fuzz(300)
@given(where=st.sampled_from(MODEL_PATHS), value=JSON)
def test_spec_loader_on_mutated_models(tmp_path_factory, where, value):
    from multitask_operator.loader import load_file

    document = _set(json.loads(json.dumps(MODEL)), where, value)
    path = tmp_path_factory.mktemp("spec") / "model.yaml"
    try:
        text = yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    result = load_file(path)
    _one_line_each(result.problems)


@fuzz(200)
@given(lines=st.lists(JSON.map(json.dumps) | st.text(max_size=40), max_size=6))
def test_data_loader_on_any_lines(tmp_path_factory, lines):
    from multitask_operator.datafiles import DataError, read_examples

    path: Path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        read_examples(path)
    except DataError as error:
        _one_line_each([str(p) for p in error.problems])


@fuzz(200)
@given(content=JSON.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=200))
def test_gateway_config_on_anything(tmp_path_factory, content):
    from multitask_gateway.config import ConfigError, load_config

    path = tmp_path_factory.mktemp("config") / "gateway.json"
    path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as error:
        _one_line_each([error])
