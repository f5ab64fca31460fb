"""The gateway against scripted upstreams: routing, prompts, label constraints, limits, error
paths and streaming pass-through, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import GenerationError
from multitask_gateway.constraints import label_regex

from tests.serving.conftest import hang_up_mid_stream

PROMPT = "<|user|>\n{instruction}\n\n{text}\n<|assistant|>\n"


class TestRouting:
    async def test_path_applies_the_instruction_and_template(self, tgi_gateway):
        fake, gw = tgi_gateway
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "a long text"})
        assert (status, body) == (200, {"generated_text": "generated"})
        sent = fake.requests[-1]
        assert sent["inputs"] == PROMPT.format(instruction="Summarise.", text="a long text")
        assert sent["parameters"]["max_new_tokens"] == 16  # limits.defaultMaxNewTokens
        assert "grammar" not in sent["parameters"]

    async def test_x_task_header(self, tgi_gateway):
        fake, gw = tgi_gateway
        status, _ = await gw.post("/generate", {"inputs": "x"}, headers={"X-Task": "summary"})
        assert status == 200
        assert fake.requests[-1]["inputs"].startswith("<|user|>\nSummarise.")

    @pytest.mark.parametrize(
        "host", ["intent-svc", "intent-svc.ml", "intent-svc.ml.svc.cluster.local:80"]
    )
    async def test_host_of_the_old_service(self, tgi_gateway, host):
        fake, gw = tgi_gateway
        fake.text = "refund"
        status, body = await gw.post("/generate", {"inputs": "money back"}, headers={"Host": host})
        assert (status, body) == (200, {"generated_text": "refund"})
        assert "Classify the intent." in fake.requests[-1]["inputs"]

    async def test_unknown_task_lists_the_known_ones(self, tgi_gateway):
        _, gw = tgi_gateway
        for path, headers in [("/tasks/nope/generate", {}), ("/generate", {"X-Task": "nope"})]:
            status, body = await gw.post(path, {"inputs": "x"}, headers=headers)
            assert status == 404
            assert body["error"].startswith("unknown task 'nope'")
            assert body["error"].endswith("known tasks: intent, sentiment, summary")

    async def test_no_task_at_all(self, tgi_gateway):
        _, gw = tgi_gateway
        status, body = await gw.post("/generate", {"inputs": "x"}, headers={"Host": "gateway"})
        assert status == 404
        assert "no task in the request" in body["error"]
        assert "intent, sentiment, summary" in body["error"]


class TestClassification:
    async def test_labels_are_a_grammar_and_the_answer_a_label(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "shipping"
        status, body = await gw.post("/v1/tasks/intent", {"input": "where is it"})
        assert status == 200
        assert body == {"task": "intent", "output": "shipping", "label": "shipping"}
        params = fake.requests[-1]["parameters"]
        assert params["grammar"] == {"type": "regex", "value": label_regex(
            ["refund", "shipping", "other"])}
        assert params["max_new_tokens"] == len("shipping") + 1

    async def test_an_answer_outside_the_labels_is_a_502(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "maybe"
        status, body = await gw.post("/v1/tasks/intent", {"input": "x"})
        assert status == 502
        assert "'maybe'" in body["error"] and "not one of its labels" in body["error"]

    async def test_the_client_cannot_replace_the_grammar(self, tgi_gateway):
        _, gw = tgi_gateway
        grammar = {"type": "regex", "value": ".*"}
        status, body = await gw.post("/tasks/intent/generate",
                                     {"inputs": "x", "parameters": {"grammar": grammar}})
        assert status == 422
        assert body["error"].startswith("parameters.grammar: task 'intent' is a classification")

    async def test_the_group_adapter_is_picked(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "pos"
        status, _ = await gw.post("/v1/tasks/sentiment", {"input": "great"})
        assert status == 200
        assert fake.requests[-1]["parameters"]["adapter_id"] == "binary"
        status, body = await gw.post("/tasks/sentiment/generate",
                                     {"inputs": "x", "parameters": {"adapter_id": "other"}})
        assert status == 422 and "adapter_id" in body["error"]

    async def test_generation_result_has_no_label(self, tgi_gateway):
        _, gw = tgi_gateway
        status, body = await gw.post("/v1/tasks/summary", {"input": "text"})
        assert (status, body) == (200, {"task": "summary", "output": "generated"})


class TestValidation:
    @pytest.mark.parametrize(
        ("body", "status", "message"),
        [
            ({"inputs": "x", "parameters": {"max_new_tokens": 65}}, 422,
             "parameters.max_new_tokens must be between 1 and 64"),
            ({"inputs": "x", "parameters": {"max_new_tokens": 0}}, 422,
             "parameters.max_new_tokens must be between 1 and 64"),
            ({"inputs": "x", "parameters": {"colour": 1}}, 422,
             "parameters.colour is not a text-generation parameter; accepted: adapter_id"),
            ({"inputs": "x", "parameters": {"temperature": "hot"}}, 422,
             "parameters.temperature must be a number"),
            ({"inputs": "x", "parameters": {"stop": "\n"}}, 422,
             "parameters.stop must be a list of strings"),
            ({"inputs": ""}, 422, "inputs must be a non-empty string"),
            ({"parameters": {}}, 422, "inputs must be a non-empty string"),
            ([1, 2], 400, "the request body must be a JSON object"),
        ],
    )
    async def test_bad_requests(self, tgi_gateway, body, status, message):
        fake, gw = tgi_gateway
        got, answer = await gw.post("/tasks/summary/generate", body)
        assert got == status
        assert answer["error"].startswith(message)
        assert answer["error_type"] in ("validation", "bad_request")
        assert fake.requests == []  # nothing reached the upstream

    async def test_invalid_json(self, tgi_gateway):
        _, gw = tgi_gateway
        async with gw.session.post(gw.url + "/tasks/summary/generate", data=b"{oops") as r:
            assert r.status == 400
            assert (await r.json())["error"].startswith("the request body is not valid JSON")

    async def test_body_size_limit_with_content_length(self, tgi_gateway):
        _, gw = tgi_gateway
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x" * 5000})
        assert status == 413
        assert body["error_type"] == "payload_too_large"
        assert "limits.maxBodyBytes" in body["error"]

    async def test_body_size_limit_when_chunked(self, tgi_gateway):
        _, gw = tgi_gateway

        async def chunks():
            yield b'{"inputs": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        async with gw.session.post(gw.url + "/tasks/summary/generate", data=chunks()) as r:
            assert r.status == 413
            assert (await r.json())["error_type"] == "payload_too_large"

    async def test_concurrency_per_task(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "hang"
        first = [asyncio.create_task(gw.post("/tasks/summary/generate", {"inputs": "x"}))
                 for _ in range(2)]  # the limit is 2
        while len(fake.requests) < 2:
            await asyncio.sleep(0.01)
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert status == 429 and body["error_type"] == "overloaded"
        assert "limits.maxConcurrencyPerTask" in body["error"]
        # Another task has its own budget.
        fake.mode, fake.text = "ok", "pos"
        assert (await gw.post("/v1/tasks/sentiment", {"input": "x"}))[0] == 200
        fake.release.set()
        assert [(await t)[0] for t in first] == [200, 200]
        assert gw.gateway.in_flight == {"intent": 0, "summary": 0, "sentiment": 0}

    async def test_unknown_route_and_method_are_json(self, tgi_gateway):
        _, gw = tgi_gateway
        status, body = await gw.post("/v2/whatever", {})
        assert status == 404 and "the gateway serves /generate" in body["error"]
        status, text = await gw.get("/generate")
        assert status == 405 and json.loads(text)["error_type"] == "method_not_allowed"


class TestUpstreamCalls:
    async def test_unary_calls_post_tgi_json_to_generate_on_one_kept_alive_connection(
        self, tgi_gateway
    ):
        fake, gw = tgi_gateway
        for _ in range(3):
            assert (await gw.post("/tasks/summary/generate", {"inputs": "x"}))[0] == 200
        assert fake.paths == ["/generate"] * 3
        assert fake.requests[-1]["stream"] is False
        assert set(fake.requests[-1]) == {"inputs", "parameters", "stream"}
        assert len(fake.peers) == 1

    async def test_details_are_asked_for_and_passed_on(self, tgi_gateway):
        fake, gw = tgi_gateway
        status, body = await gw.post("/tasks/summary/generate",
                                     {"inputs": "x", "parameters": {"details": True}})
        assert status == 200 and body["details"]["finish_reason"] == "eos_token"
        assert fake.requests[-1]["parameters"]["details"] is True

    async def test_streams_post_to_generate_stream_and_reuse_the_connection(self, tgi_gateway):
        fake, gw = tgi_gateway
        for _ in range(3):
            async with gw.session.post(gw.url + "/tasks/summary/generate_stream",
                                       json={"inputs": "x"}) as r:
                assert len([e async for e in sse_events(r)]) == 3
        assert fake.paths == ["/generate_stream"] * 3
        assert fake.requests[-1]["stream"] is True
        assert fake.requests[-1]["parameters"]["details"] is True  # for the final counts
        assert len(fake.peers) == 1  # a finished stream's connection goes back to the pool

    async def test_a_client_that_leaves_closes_the_upstream_request(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "hang"
        call = asyncio.create_task(gw.post("/tasks/summary/generate", {"inputs": "x"}))
        await asyncio.wait_for(fake.received.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(fake.cancelled.wait(), 5)  # TGI would stop generating

    async def test_an_answer_that_is_not_json_is_a_502(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "garbage"
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert status == 502 and body["error_type"] == "upstream"
        assert "not JSON: b'<html>proxy error</html>'" in body["error"]


class TestUpstreamFailures:
    async def test_upstream_down(self, start_gateway):
        gw = await start_gateway("http://127.0.0.1:9")  # discard port: nothing listens
        for path in ("/tasks/summary/generate", "/tasks/summary/generate_stream"):
            status, body = await gw.post(path, {"inputs": "x"})
            assert status == 503, path
            assert body["error_type"] == "upstream_unavailable"
            assert "http://127.0.0.1:9 is unreachable" in body["error"]
        status, text = await gw.get("/health")
        assert status == 503 and "unreachable" in text

    async def test_upstream_validation_error_is_passed_on(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode, fake.status = "status", 422
        fake.error = {"error": "Input validation error: too long", "error_type": "validation"}
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert status == 422
        assert body == {"error": "Input validation error: too long", "error_type": "validation"}

    @pytest.mark.parametrize(("upstream", "expected"), [(500, 502), (503, 503)])
    async def test_upstream_failure(self, tgi_gateway, upstream, expected):
        fake, gw = tgi_gateway
        fake.mode, fake.status = "status", upstream
        fake.error = {"error": "shard died", "error_type": "generation"}
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert status == expected
        assert "shard died" in body["error"]

    async def test_a_silent_upstream_times_out(self, fake_tgi, start_gateway):
        fake, url = fake_tgi
        fake.mode = "hang"
        gw = await start_gateway(url, timeout_seconds=0.3)
        status, body = await asyncio.wait_for(gw.post("/tasks/summary/generate", {"inputs": "x"}),
                                              timeout=10)
        assert status == 504 and body["error_type"] == "upstream_timeout"
        assert "sent nothing for 0.3 s" in body["error"]


async def sse_events(response: aiohttp.ClientResponse):
    async for line in response.content:
        if line.startswith(b"data:"):
            yield json.loads(line[5:])


class TestStreaming:
    async def test_events_are_passed_through_as_they_arrive(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.gate = asyncio.Queue()
        fake.gate.put_nowait(None)  # let the first token out only
        seen = []
        async with gw.session.post(gw.url + "/tasks/summary/generate_stream",
                                   json={"inputs": "x"}) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            async for event in sse_events(response):
                seen.append(event)
                # The upstream holds the next token until the client has this one: a gateway
                # that buffered the stream would deadlock here (and the test time out).
                fake.gate.put_nowait(None)
        assert [e["token"]["text"] for e in seen] == ["one", " two", " three"]
        assert [e["generated_text"] for e in seen] == [None, None, "one two three"]
        assert all(e["details"] is None for e in seen)  # the client did not ask for details

    async def test_a_client_that_leaves_stops_the_upstream_stream(self, tgi_gateway):
        fake, gw = tgi_gateway
        await hang_up_mid_stream(fake, gw, "/tasks/summary/generate_stream", {"inputs": "x"},
                                 "generate_stream")

    async def test_details_and_full_text(self, tgi_gateway):
        _, gw = tgi_gateway
        body = {"inputs": "in:", "parameters": {"details": True, "return_full_text": True}}
        async with gw.session.post(gw.url + "/tasks/summary/generate_stream", json=body) as r:
            events = [e async for e in sse_events(r)]
        assert events[-1]["generated_text"] == "in:one two three"
        assert events[-1]["details"]["finish_reason"] == "eos_token"

    async def test_a_failure_mid_stream_is_an_error_event(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "stream_error"
        fake.tokens = ["one", " two"]
        async with gw.session.post(gw.url + "/tasks/summary/generate_stream",
                                   json={"inputs": "x"}) as r:
            assert r.status == 200
            events = [e async for e in sse_events(r)]
        assert events[0]["token"]["text"] == "one"
        assert events[-1] == {"error": "CUDA out of memory", "error_type": "generation"}

    async def test_huggingface_hub_asynchronous_client(self, tgi_gateway):
        fake, gw = tgi_gateway
        async with AsyncInferenceClient(base_url=gw.url + "/tasks/summary") as client:
            text = await client.text_generation("x", max_new_tokens=5)
            assert text == "generated"
            pieces = [t async for t in await client.text_generation("x", stream=True)]
            assert pieces == ["one", " two", " three"]
            fake.mode = "stream_error"
            with pytest.raises(GenerationError, match="CUDA out of memory"):
                async for _ in await client.text_generation("x", stream=True):
                    pass
        assert fake.requests[0]["parameters"]["max_new_tokens"] == 5

    async def test_classification_stream_ends_with_a_label_or_an_error(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.tokens = ["ref", "und"]
        async with gw.session.post(gw.url + "/tasks/intent/generate_stream",
                                   json={"inputs": "x"}) as r:
            events = [e async for e in sse_events(r)]
        assert events[-1]["generated_text"] == "refund"
        fake.tokens = ["nonsense"]
        async with gw.session.post(gw.url + "/tasks/intent/generate_stream",
                                   json={"inputs": "x"}) as r:
            events = [e async for e in sse_events(r)]
        assert events[-1]["error_type"] == "upstream"


class TestObservability:
    async def test_metrics_per_task(self, tgi_gateway):
        fake, gw = tgi_gateway
        await gw.post("/tasks/summary/generate", {"inputs": "x"})
        await gw.post("/tasks/summary/generate", {"inputs": "x", "parameters": {"top_k": "a"}})
        fake.text = "refund"
        await gw.post("/v1/tasks/intent", {"input": "x"})
        status, text = await gw.get("/metrics")
        assert status == 200

        def value(pattern: str) -> float:
            match = re.search("^" + re.escape(pattern) + r" (\S+)$", text, re.MULTILINE)
            assert match, pattern
            return float(match.group(1))

        labels = 'code="200",endpoint="generate",task="summary"'
        assert value(f"mtm_gateway_requests_total{{{labels}}}") == 1
        assert value('mtm_gateway_requests_total{code="422",endpoint="generate",'
                     'task="summary"}') == 1
        assert value('mtm_gateway_errors_total{error_type="validation",task="summary"}') == 1
        assert value('mtm_gateway_request_duration_seconds_count{endpoint="task_api",'
                     'task="intent"}') == 1
        assert value('mtm_gateway_in_flight_requests{task="summary"}') == 0

    async def test_info_health_and_task_list(self, tgi_gateway):
        _, gw = tgi_gateway
        status, text = await gw.get("/info")
        info = json.loads(text)
        assert status == 200 and info["model_id"] == "fake"
        assert info["gateway"]["tasks"] == ["intent", "sentiment", "summary"]
        status, text = await gw.get("/tasks/intent/info")
        assert json.loads(text)["task"]["labels"] == ["refund", "shipping", "other"]
        assert (await gw.get("/health"))[0] == 200
        assert (await gw.get("/livez"))[0] == 200
        status, text = await gw.get("/v1/tasks")
        assert [t["name"] for t in json.loads(text)["tasks"]] == ["intent", "summary", "sentiment"]


class TestVllm:
    async def test_classification_through_structured_outputs(self, fake_vllm, start_gateway):
        fake, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        status, body = await gw.post("/v1/tasks/intent", {"input": "money"})
        assert (status, body) == (200, {"task": "intent", "output": "refund", "label": "refund"})
        sent = fake.requests[-1]
        assert sent["model"] == "support"
        assert sent["structured_outputs"] == {"regex": label_regex(["refund", "shipping", "other"])}
        assert sent["temperature"] == 0.0  # TGI's default is greedy
        assert sent["prompt"].startswith("<|user|>\nClassify the intent.")

    async def test_adapter_is_the_model_name(self, fake_vllm, start_gateway):
        fake, url = fake_vllm
        fake.text = "pos"
        gw = await start_gateway(url, engine="vllm")
        assert (await gw.post("/v1/tasks/sentiment", {"input": "x"}))[0] == 200
        assert fake.requests[-1]["model"] == "binary"

    async def test_stream_is_translated_to_tgi_events(self, fake_vllm, start_gateway):
        fake, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        async with gw.session.post(gw.url + "/tasks/intent/generate_stream",
                                   json={"inputs": "x"}) as r:
            events = [e async for e in sse_events(r)]
        assert [e["token"]["text"] for e in events] == ["ref", "und"]
        assert events[-1]["generated_text"] == "refund"

    async def test_info_and_health(self, fake_vllm, start_gateway):
        _, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        status, text = await gw.get("/info")
        info = json.loads(text)
        assert status == 200 and info["models"] == ["support"] and info["router"] == "vllm"
        assert (await gw.get("/health"))[0] == 200
        down = await start_gateway("http://127.0.0.1:9", engine="vllm")
        status, text = await down.get("/health")
        assert status == 503 and "http://127.0.0.1:9 is unreachable" in text

    async def test_errors_and_unsupported_parameters(self, fake_vllm, start_gateway):
        fake, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        status, body = await gw.post("/tasks/summary/generate",
                                     {"inputs": "x", "parameters": {"watermark": True}})
        assert status == 422 and "not supported when the gateway serves through vLLM" in body[
            "error"]
        fake.status = 400
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert (status, body["error"]) == (400, "bad model name")
        fake.status = 500
        status, body = await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert status == 502
