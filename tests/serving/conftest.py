"""Fixtures of the serving tests: a gateway in front of a scripted upstream (fast), and a
tiny random model built once per session for the end-to-end tests (slow)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from multitask_gateway.app import Gateway
from multitask_gateway.config import GatewayConfig, Limits, parse_config
from multitask_gateway.upstream import make_upstream

from tests.serving.fakes import FakeTgi, FakeVllm, serve

CONFIG = {
    "model": "support",
    "promptFormat": {"prefix": "<|user|>\n", "suffix": "\n<|assistant|>\n", "source": "chat"},
    "limits": {"maxNewTokens": 64, "defaultMaxNewTokens": 16, "maxBodyBytes": 4096,
               "maxConcurrencyPerTask": 2, "timeoutSeconds": 5},
    "tasks": [
        {"name": "intent", "type": "classification", "instruction": "Classify the intent.",
         "labels": ["refund", "shipping", "other"], "service": "intent-svc"},
        {"name": "summary", "type": "generation", "instruction": "Summarise.",
         "service": "summary-svc"},
        {"name": "sentiment", "type": "classification", "instruction": "Sentiment?",
         "labels": ["pos", "neg"], "adapter": "binary"},
    ],
}


@dataclasses.dataclass
class Running:
    url: str
    gateway: Gateway
    session: aiohttp.ClientSession

    async def post(self, path: str, body=None, **kwargs) -> tuple[int, dict]:
        async with self.session.post(self.url + path, json=body, **kwargs) as response:
            return response.status, await response.json(content_type=None)

    async def get(self, path: str, **kwargs) -> tuple[int, str]:
        async with self.session.get(self.url + path, **kwargs) as response:
            return response.status, await response.text()


async def hang_up_mid_stream(fake: FakeTgi, gw: Running, path: str, body: dict,
                             endpoint: str) -> None:
    """A client reads the first event of a stream, then hangs up while the upstream is still
    generating: the upstream request must end, the slot be freed, the metrics say 499."""
    fake.gate = asyncio.Queue()
    fake.gate.put_nowait(None)
    response = await gw.session.post(gw.url + path, json=body)
    assert (await response.content.readline()).startswith(b"data:")
    assert gw.gateway.in_flight["summary"] == 1
    response.close()
    await asyncio.wait_for(fake.stream_ended.wait(), timeout=10)
    while gw.gateway.in_flight["summary"]:
        await asyncio.sleep(0.01)
    _, metrics = await gw.get("/metrics")
    assert (f'mtm_gateway_requests_total{{code="499",endpoint="{endpoint}",task="summary"}}'
            in metrics)


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return parse_config(CONFIG)


@pytest.fixture
async def start_gateway() -> AsyncIterator[Callable]:
    """start_gateway(upstream_url, engine="tgi", **limits) -> Running."""
    runners = []
    sessions = []

    async def start(upstream_url: str, engine: str = "tgi", **limits) -> Running:
        config = parse_config(CONFIG)
        if limits:
            config = config.replace(limits=Limits(**{**config.limits.model_dump(), **limits}))
        upstream = make_upstream(engine, upstream_url, config.limits.timeout_seconds, "support")
        gateway = Gateway(config, upstream)
        runner, url = await serve(gateway.app())
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        return Running(url, gateway, session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def fake_tgi() -> AsyncIterator[tuple[FakeTgi, str]]:
    fake = FakeTgi()
    runner, url = await serve(fake.app())
    yield fake, url
    fake.release.set()
    await runner.cleanup()


@pytest.fixture
async def fake_vllm() -> AsyncIterator[tuple[FakeVllm, str]]:
    fake = FakeVllm()
    runner, url = await serve(fake.app())
    yield fake, url
    await runner.cleanup()


@pytest.fixture
async def tgi_gateway(fake_tgi, start_gateway) -> tuple[FakeTgi, Running]:
    fake, url = fake_tgi
    return fake, await start_gateway(url)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random Llama with a byte-level tokenizer and chat template (~10 s, once)."""
    from multitask_trainer.tiny_model import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))
