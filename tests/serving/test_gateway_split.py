"""The gateway's side of a handover (split.py): requests through a task's old Service are split
between the unified model and the old backend, passed through unchanged, and compared.

Two scripted upstreams play the unified model's inference server and the old per-task backend;
they answer different texts when a test wants the sides to disagree."""

from __future__ import annotations

import asyncio
import json
import random

import aiohttp
import pytest
from multitask_gateway.app import Gateway
from multitask_gateway.config import parse_config
from multitask_gateway.split import agree, answer_text
from multitask_gateway.upstream import make_upstream
from multitask_gateway.watch import watch

from tests.serving.conftest import CONFIG
from tests.serving.fakes import FakeTgi, serve


def config_with(legacy: str, weight: int, sample: float = 1.0, step: str = "r1-10",
                task: str = "intent") -> dict:
    tasks = []
    for t in CONFIG["tasks"]:
        t = dict(t)
        if t["name"] == task:
            t["rollout"] = {"legacy": legacy, "weight": weight, "sampleRate": sample,
                            "similarity": 0.5, "step": step}
        tasks.append(t)
    return {**CONFIG, "tasks": tasks}


@pytest.fixture
async def sides():
    """(unified fake, legacy fake, start(weight, ...) -> (gateway, url, session))."""
    unified, legacy = FakeTgi(), FakeTgi()
    unified.text, legacy.text = "refund", "refund"
    runners = [await serve(unified.app()), await serve(legacy.app())]
    made = []

    async def start(weight: int, sample: float = 1.0, seed: int = 0, **kw):
        config = parse_config(config_with(runners[1][1], weight, sample, **kw))
        gateway = Gateway(config, make_upstream("tgi", runners[0][1], 5, "support"))
        gateway.split.rng = random.Random(seed)
        runner, url = await serve(gateway.app())
        session = aiohttp.ClientSession()
        made.append((runner, session))
        return gateway, url, session

    yield unified, legacy, start
    for runner, session in made:
        await session.close()
        await runner.cleanup()
    for runner, _ in runners:
        await runner.cleanup()


async def settle(gateway: Gateway) -> None:
    """Wait for the background comparisons to finish."""
    while gateway.split._background:
        await asyncio.wait(set(gateway.split._background))


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def metrics_of(session, url) -> str:
    async with session.get(url + "/metrics") as response:
        return await response.text()


CLIENT_BODY = {"inputs": "where is my money", "parameters": {"max_new_tokens": 3}}


async def test_shadow_answers_from_the_old_backend_unchanged_and_compares_with_unified(sides):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=0)
    for _ in range(4):
        async with session.post(url + "/generate?x=1", json=CLIENT_BODY,
                                headers={"Host": "intent-svc.ml.svc", "X-Trace": "t1"}) as r:
            assert r.status == 200
            assert await r.json() == {"generated_text": "refund"}
    await settle(gateway)
    # The old backend got exactly what the client sent: path, query, headers, body.
    assert legacy.requests == [CLIENT_BODY] * 4 and legacy.paths == ["/generate"] * 4
    assert legacy.headers[0]["X-Trace"] == "t1"
    assert legacy.headers[0]["Host"] == "intent-svc.ml.svc"
    # The unified model got the same requests as the gateway builds them (mirrored).
    assert len(unified.requests) == 4
    assert unified.requests[0]["inputs"] != CLIENT_BODY["inputs"]  # with the prompt template
    text = await metrics_of(session, url)
    assert metric(text, "mtm_gateway_rollout_compared_total", task="intent", step="r1-10") == 4
    assert metric(text, "mtm_gateway_rollout_agreed_total", task="intent") == 4
    assert metric(text, "mtm_gateway_rollout_answers_total", side="legacy", role="client") == 4
    assert metric(text, "mtm_gateway_rollout_answers_total", side="unified", role="mirror",
                  outcome="ok") == 4


async def test_a_full_weight_answers_from_unified_and_mirrors_to_the_old_backend(sides):
    unified, legacy, start = sides
    legacy.text = "shipping"  # the sides disagree
    gateway, url, session = await start(weight=100)
    for _ in range(3):
        async with session.post(url + "/generate", json=CLIENT_BODY,
                                headers={"Host": "intent-svc"}) as r:
            assert (await r.json())["generated_text"] == "refund"
    await settle(gateway)
    text = await metrics_of(session, url)
    assert metric(text, "mtm_gateway_rollout_compared_total", task="intent") == 3
    assert metric(text, "mtm_gateway_rollout_agreed_total", task="intent") == 0
    assert metric(text, "mtm_gateway_rollout_answers_total", side="legacy", role="mirror") == 3


async def test_the_weight_splits_the_requests(sides):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=30, sample=0.001, seed=7)
    for _ in range(200):
        async with session.post(url + "/generate", json=CLIENT_BODY,
                                headers={"Host": "intent-svc"}) as r:
            assert r.status == 200
    share = len(unified.requests) / 200
    assert 0.2 < share < 0.4, share  # seeded: deterministic
    assert len(legacy.requests) + len(unified.requests) == 200


async def test_other_ways_of_naming_the_task_are_not_split(sides):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=0)
    async with session.post(url + "/tasks/intent/generate", json=CLIENT_BODY) as r:
        assert r.status == 200
    async with session.post(url + "/generate", json=CLIENT_BODY,
                            headers={"X-Task": "intent"}) as r:
        assert r.status == 200
    await settle(gateway)
    assert legacy.requests == [] and len(unified.requests) == 2


async def test_streams_from_the_old_backend_pass_through_as_they_come(sides):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=0)
    body = {**CLIENT_BODY, "stream": True}
    async with session.post(url + "/generate_stream", json=body,
                            headers={"Host": "intent-svc"}) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.read()
    events = [json.loads(line[5:]) for line in raw.decode().split("\n\n") if line]
    assert [e["token"]["text"] for e in events] == legacy.tokens
    assert events[-1]["details"]["input_length"] == legacy.prompt_tokens  # untouched
    assert unified.requests == []  # streams are not compared


async def test_an_unreachable_old_backend_is_a_502_that_names_it_and_counts_as_its_error(sides):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=0)
    dead = "http://127.0.0.1:9"
    gateway.reload(parse_config(config_with(dead, 0)))
    async with session.post(url + "/generate", json=CLIENT_BODY,
                            headers={"Host": "intent-svc"}) as r:
        assert r.status == 502
        assert "old backend of task 'intent'" in (await r.json())["error"]
    await settle(gateway)
    text = await metrics_of(session, url)
    assert metric(text, "mtm_gateway_rollout_answers_total", side="legacy", outcome="error") == 1


async def test_a_new_config_file_is_adopted_by_the_running_gateway(sides, tmp_path):
    unified, legacy, start = sides
    gateway, url, session = await start(weight=0)
    path = tmp_path / "gateway.json"
    first = json.dumps(gateway.config.to_wire()).encode()
    path.write_bytes(first)
    watcher = asyncio.create_task(watch(path, first, gateway.reload, interval=0.05))
    try:
        new = gateway.config.to_wire()
        new["tasks"][0]["rollout"]["weight"] = 100
        new["tasks"][0]["rollout"]["step"] = "r1-100"
        path.write_text("{not json")  # a broken file is ignored
        await asyncio.sleep(0.2)
        assert gateway.config.tasks["intent"].rollout.weight == 0
        path.write_text(json.dumps(new))
        for _ in range(100):
            if gateway.config.tasks["intent"].rollout.weight == 100:
                break
            await asyncio.sleep(0.05)
        assert gateway.config.tasks["intent"].rollout.step == "r1-100"
        text = await metrics_of(session, url)
        assert f'mtm_gateway_config_info{{hash="{gateway.config.digest()}"}} 1.0' in text
        assert text.count("mtm_gateway_config_info{") == 1
    finally:
        watcher.cancel()


def test_answers_are_read_from_tgi_and_openai_shapes():
    assert answer_text(b'{"generated_text": "a"}') == "a"
    assert answer_text(b'[{"generated_text": "b"}]') == "b"
    assert answer_text(b'{"choices": [{"message": {"content": "c"}}]}') == "c"
    assert answer_text(b'{"choices": [{"text": "d"}]}') == "d"
    assert answer_text(b"<html>") is None and answer_text(b'{"x": 1}') is None


def test_agreement_is_the_label_for_classification_and_chrf_for_generation():
    config = parse_config(CONFIG)
    intent, summary = config.tasks["intent"], config.tasks["summary"]
    assert agree(intent, " Refund", "refund\n", 0.5)
    assert not agree(intent, "refund", "shipping", 0.0)
    long = "the parcel left the warehouse on monday and arrives on thursday"
    assert agree(summary, long, long.replace("thursday", "friday"), 0.5)
    assert not agree(summary, long, "a recipe for lemon cake", 0.5)
    assert not agree(summary, "", long, 0.0)


def test_a_rollout_needs_the_tasks_service():
    bad = config_with("http://x", 0)
    bad["tasks"][0] = {k: v for k, v in bad["tasks"][0].items() if k != "service"}
    with pytest.raises(ValueError, match="rollout"):
        parse_config(bad)


def test_the_operator_and_the_gateway_hash_a_config_alike():
    from multitask_operator.api.gateway_config import wire_hash

    config = parse_config(config_with("http://old.ns.svc:80", 10))
    wire = json.loads(json.dumps(config.to_wire(), indent=2, sort_keys=True))
    assert parse_config(wire).digest() == wire_hash(wire) == config.digest()
