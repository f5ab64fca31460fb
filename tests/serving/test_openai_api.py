"""The gateway's OpenAI-compatible API, called with the real `openai` SDK (async, sync and
streaming) and huggingface_hub's chat_completion, in front of the scripted TGI and vLLM fakes.
The same calls against a real model behind `mtm serve-model` are in test_gateway_e2e.py."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai
import pytest
from huggingface_hub import InferenceClient

from tests.serving.conftest import hang_up_mid_stream

LABELS = {"refund", "shipping", "other"}


def client(gw, path: str = "/v1", **kwargs) -> openai.AsyncOpenAI:
    # No retries: a 429 or 5xx must reach the test as the SDK's exception, once.
    return openai.AsyncOpenAI(base_url=gw.url + path, api_key="unused", max_retries=0, **kwargs)


def user(text: str = "I want my money back") -> list[dict]:
    return [{"role": "user", "content": text}]


async def raw_events(gw, path: str, body: dict, **kwargs) -> tuple[int, list]:
    """The SSE data lines of a stream, parsed (`[DONE]` kept as the string)."""
    async with gw.session.post(gw.url + path, json=body, **kwargs) as response:
        seen = []
        async for line in response.content:
            if line.startswith(b"data:"):
                data = line[5:].strip().decode()
                seen.append(data if data == "[DONE]" else json.loads(data))
        return response.status, seen


class TestChatCompletions:
    async def test_a_classification_answer_is_the_label(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "refund"
        async with client(gw) as sdk:
            answer = await sdk.chat.completions.create(model="intent", messages=user())
        assert answer.object == "chat.completion"
        assert answer.model == "intent"
        assert answer.choices[0].message.role == "assistant"
        assert answer.choices[0].message.content == "refund"
        assert answer.choices[0].finish_reason == "stop"
        # usage as the upstream counted it: x-prompt-tokens and details.generated_tokens
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens,
                answer.usage.total_tokens) == (7, 1, 8)
        sent = fake.requests[-1]
        assert sent["inputs"] == ("<|user|>\nClassify the intent.\n\nI want my money back"
                                  "\n<|assistant|>\n")
        assert sent["parameters"]["grammar"] == {"type": "regex",
                                                 "value": "(refund|shipping|other)"}
        assert sent["parameters"]["max_new_tokens"] == len("shipping") + 1

    async def test_the_last_user_message_is_the_input(self, tgi_gateway):
        fake, gw = tgi_gateway
        messages = [
            {"role": "system", "content": "You are a helpful classifier."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "other"},
            {"role": "user", "content": [{"type": "text", "text": "parcel"},
                                         {"type": "text", "text": "is late"}]},
        ]
        async with client(gw) as sdk:
            await sdk.chat.completions.create(model="summary", messages=messages)
        prompt = fake.requests[-1]["inputs"]
        assert prompt == "<|user|>\nSummarise.\n\nparcel\nis late\n<|assistant|>\n"

    async def test_parameters_reach_the_engine(self, tgi_gateway):
        fake, gw = tgi_gateway
        async with client(gw) as sdk:
            await sdk.chat.completions.create(
                model="summary", messages=user(), max_tokens=10, temperature=0.5, top_p=0.9,
                stop="END", seed=3, user="u-1", frequency_penalty=0.5,
            )
            sent = fake.requests[-1]["parameters"]
            assert sent == {"details": True, "max_new_tokens": 10, "do_sample": True,
                            "temperature": 0.5, "top_p": 0.9, "stop": ["END"], "seed": 3,
                            "frequency_penalty": 0.5}
            # The newer name wins; no temperature means greedy, as the task was evaluated.
            await sdk.chat.completions.create(model="summary", messages=user(), max_tokens=5,
                                              max_completion_tokens=12)
            sent = fake.requests[-1]["parameters"]
            assert sent["max_new_tokens"] == 12 and "do_sample" not in sent
            await sdk.chat.completions.create(model="summary", messages=user())
            assert fake.requests[-1]["parameters"]["max_new_tokens"] == 16  # the default

    async def test_a_json_schema_is_a_grammar_for_generation_tasks(self, tgi_gateway):
        fake, gw = tgi_gateway
        schema = {"type": "object", "properties": {"title": {"type": "string"}}}
        async with client(gw) as sdk:
            await sdk.chat.completions.create(
                model="summary", messages=user(),
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "t", "schema": schema}},
            )
            assert fake.requests[-1]["parameters"]["grammar"] == {"type": "json",
                                                                  "value": schema}
            with pytest.raises(openai.BadRequestError) as caught:
                await sdk.chat.completions.create(
                    model="intent", messages=user(), response_format={"type": "json_object"})
        assert caught.value.param == "response_format"

    async def test_the_sync_client(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "shipping"

        def call() -> str:
            with openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0) as sdk:
                answer = sdk.chat.completions.create(model="intent", messages=user())
                return answer.choices[0].message.content

        assert await asyncio.to_thread(call) == "shipping"

    async def test_huggingface_hub_chat_completion(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "other"

        def call():
            hub = InferenceClient(base_url=gw.url + "/v1")
            answer = hub.chat_completion(user(), model="intent")
            pieces = [c.choices[0].delta.content for c in hub.chat_completion(
                user(), model="summary", stream=True) if c.choices]
            return answer, pieces

        answer, pieces = await asyncio.to_thread(call)
        assert answer.choices[0].message.content == "other"
        assert answer.usage.prompt_tokens == 7
        assert "".join(p or "" for p in pieces) == "one two three"


class TestStreaming:
    async def test_chunks_in_order_then_usage_then_done(self, tgi_gateway):
        fake, gw = tgi_gateway
        body = {"model": "summary", "messages": user(), "stream": True,
                "stream_options": {"include_usage": True}}
        status, events = await raw_events(gw, "/v1/chat/completions", body)
        assert status == 200
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert len({c["id"] for c in chunks}) == 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert [c["choices"][0]["delta"]["content"] for c in chunks[1:4]] == ["one", " two",
                                                                             " three"]
        assert chunks[4]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                           "finish_reason": "stop"}
        assert all(c["usage"] is None for c in chunks[:5])
        assert chunks[5]["choices"] == []
        assert chunks[5]["usage"] == {"prompt_tokens": 7, "completion_tokens": 3,
                                      "total_tokens": 10}

    async def test_the_sdk_streams_and_every_classification_chunk_makes_a_label(
        self, tgi_gateway
    ):
        fake, gw = tgi_gateway
        fake.tokens = ["ship", "ping"]
        async with client(gw) as sdk:
            stream = await sdk.chat.completions.create(model="intent", messages=user(),
                                                       stream=True)
            chunks = [chunk async for chunk in stream]
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "shipping" and text in LABELS
        assert chunks[-1].choices[0].finish_reason == "stop"
        assert chunks[-1].usage is None  # not asked for

    async def test_an_answer_outside_the_labels_ends_the_stream_with_an_error(
        self, tgi_gateway
    ):
        fake, gw = tgi_gateway
        fake.tokens = ["maybe"]
        async with client(gw) as sdk:
            stream = await sdk.chat.completions.create(model="intent", messages=user(),
                                                       stream=True)
            with pytest.raises(openai.APIError, match="not one of its labels"):
                async for _ in stream:
                    pass

    async def test_a_failure_mid_stream_is_an_error_event_not_a_hang(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "stream_error"
        fake.tokens = ["one", " two"]
        body = {"model": "summary", "messages": user(), "stream": True}
        status, events = await asyncio.wait_for(
            raw_events(gw, "/v1/chat/completions", body), 10)
        assert status == 200
        assert events[-1] == {"error": {"message": "CUDA out of memory", "type": "server_error",
                                        "param": None, "code": "generation"}}
        async with client(gw) as sdk:
            stream = await sdk.chat.completions.create(model="summary", messages=user(),
                                                       stream=True)
            with pytest.raises(openai.APIError, match="CUDA out of memory"):
                async for _ in stream:
                    pass

    async def test_a_client_that_leaves_cancels_the_upstream_request(self, tgi_gateway):
        fake, gw = tgi_gateway
        await hang_up_mid_stream(fake, gw, "/v1/chat/completions", {
            "model": "summary", "messages": user(), "stream": True}, "chat_completions")


class TestCompletions:
    async def test_unary_and_streamed(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.text = "refund"
        async with client(gw) as sdk:
            answer = await sdk.completions.create(model="intent", prompt="money back")
            assert answer.object == "text_completion"
            assert answer.choices[0].text == "refund"
            assert answer.usage.prompt_tokens == 7
            fake.tokens = ["ref", "und"]
            stream = await sdk.completions.create(
                model="intent", prompt=["money back"], stream=True,
                stream_options={"include_usage": True})
            chunks = [c async for c in stream]
        assert "".join(c.choices[0].text for c in chunks if c.choices) == "refund"
        assert chunks[-1].usage.completion_tokens == 2
        assert "Classify the intent.\n\nmoney back" in fake.requests[-1]["inputs"]

    async def test_what_cannot_be_honoured_is_refused(self, tgi_gateway):
        _, gw = tgi_gateway
        async with client(gw) as sdk:
            for kwargs, param in [({"echo": True}, "echo"), ({"suffix": "x"}, "suffix"),
                                  ({"best_of": 3}, "best_of"), ({"logprobs": 2}, "logprobs"),
                                  ({"n": 2}, "n")]:
                with pytest.raises(openai.BadRequestError) as caught:
                    await sdk.completions.create(model="summary", prompt="x", **kwargs)
                assert caught.value.param == param, kwargs
            with pytest.raises(openai.BadRequestError, match="one prompt per request"):
                await sdk.completions.create(model="summary", prompt=["a", "b"])


class TestModels:
    async def test_every_task_is_a_model_and_old_services_are_aliases(self, tgi_gateway):
        _, gw = tgi_gateway
        async with client(gw) as sdk:
            models = {m.id: m async for m in sdk.models.list()}
            assert set(models) == {"intent", "summary", "sentiment", "intent-svc",
                                   "summary-svc"}
            assert models["intent-svc"].model_extra["root"] == "intent"
            assert (await sdk.models.retrieve("sentiment")).owned_by == "support"
            with pytest.raises(openai.NotFoundError) as caught:
                await sdk.models.retrieve("gpt-4")
        assert caught.value.code == "model_not_found"
        async with client(gw, "/tasks/summary/v1") as sdk:
            assert [m.id async for m in sdk.models.list()] == ["summary", "summary-svc"]


class TestRouting:
    async def test_by_model_alias_path_header_and_host(self, tgi_gateway):
        fake, gw = tgi_gateway
        async with client(gw) as sdk:
            await sdk.chat.completions.create(model="summary-svc", messages=user())
            assert "Summarise." in fake.requests[-1]["inputs"]
            # An old client keeps its own model id; X-Task or the Host decide.
            await sdk.chat.completions.create(model="tgi", messages=user(),
                                              extra_headers={"X-Task": "summary"})
            assert "Summarise." in fake.requests[-1]["inputs"]
            fake.text = "refund"
            await sdk.chat.completions.create(model="my-old-model", messages=user(),
                                              extra_headers={"Host": "intent-svc.shop:80"})
            assert "Classify the intent." in fake.requests[-1]["inputs"]
        fake.text = "pos"
        async with client(gw, "/tasks/sentiment/v1") as sdk:
            answer = await sdk.chat.completions.create(model="whatever", messages=user())
            assert answer.model == "whatever"  # the client's own model id comes back
            assert "Sentiment?" in fake.requests[-1]["inputs"]
            assert fake.requests[-1]["parameters"]["adapter_id"] == "binary"

    async def test_conflicts_and_unknown_models(self, tgi_gateway):
        _, gw = tgi_gateway
        async with client(gw) as sdk:
            with pytest.raises(openai.BadRequestError, match="names task 'intent'") as caught:
                await sdk.chat.completions.create(model="intent", messages=user(),
                                                  extra_headers={"X-Task": "summary"})
            assert caught.value.param == "model"
            with pytest.raises(openai.NotFoundError, match="known: intent, sentiment, summary"):
                await sdk.chat.completions.create(model="gpt-4", messages=user())
            with pytest.raises(openai.NotFoundError, match="unknown task 'nope'"):
                await sdk.chat.completions.create(model="x", messages=user(),
                                                  extra_headers={"X-Task": "nope"})


class TestErrors:
    @pytest.mark.parametrize(("kwargs", "param"), [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
         "messages[0].content[0].type"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
         "messages[1].role"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ])
    async def test_bad_requests_name_the_parameter(self, tgi_gateway, kwargs, param):
        fake, gw = tgi_gateway
        arguments = {"model": "summary", "messages": user(), **kwargs}
        async with client(gw) as sdk:
            with pytest.raises(openai.BadRequestError) as caught:
                await sdk.chat.completions.create(**arguments)
        assert caught.value.param == param
        assert param in caught.value.body["message"]
        assert fake.requests == []  # nothing went upstream

    async def test_non_finite_numbers_and_bad_json(self, tgi_gateway):
        fake, gw = tgi_gateway
        for raw, param in [(b'{"model": "summary", "messages": [{"role": "user", "content": '
                            b'"x"}], "temperature": 1e999}', "temperature"),
                           (b'{"model": "summary", "messages": [{"role": "user", "content": '
                            b'"x"}], "temperature": NaN}', None),
                           (b'{"model": "summary", "messages": "hi"}', "messages"),
                           (b'{"model": 5, "messages": []}', "model")]:
            async with gw.session.post(gw.url + "/v1/chat/completions", data=raw) as response:
                body = await response.json()
            assert response.status == 400, raw
            assert body["error"]["param"] == param and body["error"]["type"] == (
                "invalid_request_error")
        async with gw.session.post(gw.url + "/v1/chat/completions", data=b"{") as response:
            assert response.status == 400
            assert "not valid JSON" in (await response.json())["error"]["message"]
        assert fake.requests == []

    async def test_status_codes_map_to_the_sdk_exception_classes(self, tgi_gateway):
        fake, gw = tgi_gateway
        async with client(gw) as sdk:
            fake.mode, fake.status = "status", 422
            fake.error = {"error": "Input validation error: too long", "error_type": "validation"}
            with pytest.raises(openai.BadRequestError, match="too long"):
                await sdk.chat.completions.create(model="summary", messages=user())
            for mode_status, exception in [(500, openai.InternalServerError),
                                           (503, openai.InternalServerError)]:
                fake.status = mode_status
                with pytest.raises(exception) as caught:
                    await sdk.chat.completions.create(model="summary", messages=user())
                assert caught.value.status_code == (502 if mode_status == 500 else 503)
            fake.mode = "ok"
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk.chat.completions.create(model="summary", messages=user("x" * 5000))
            assert caught.value.status_code == 413
            fake.text = "maybe"
            with pytest.raises(openai.InternalServerError, match="not one of its labels"):
                await sdk.chat.completions.create(model="intent", messages=user())

    async def test_concurrency_limit_is_a_rate_limit_error(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode = "hang"
        async with client(gw) as sdk:
            calls = [asyncio.create_task(sdk.chat.completions.create(
                model="summary", messages=user())) for _ in range(2)]
            while gw.gateway.in_flight["summary"] < 2:
                await asyncio.sleep(0.01)
            with pytest.raises(openai.RateLimitError, match="limits.maxConcurrencyPerTask"):
                await sdk.chat.completions.create(model="summary", messages=user())
            fake.release.set()
            await asyncio.gather(*calls)

    async def test_unknown_routes_under_v1_are_openai_errors(self, tgi_gateway):
        _, gw = tgi_gateway
        async with gw.session.post(gw.url + "/v1/embeddings", json={}) as response:
            body = await response.json()
        assert response.status == 404 and body["error"]["code"] == "not_found"
        assert "/v1/chat/completions" in body["error"]["message"]

    async def test_metrics_per_task_and_endpoint(self, tgi_gateway):
        _, gw = tgi_gateway
        async with client(gw) as sdk:
            await sdk.chat.completions.create(model="summary", messages=user())
            await sdk.completions.create(model="summary", prompt="x")
            with pytest.raises(openai.BadRequestError):
                await sdk.chat.completions.create(model="summary", messages=user(), n=3)
        _, metrics = await gw.get("/metrics")
        for line in [
            'mtm_gateway_requests_total{code="200",endpoint="chat_completions",task="summary"}',
            'mtm_gateway_requests_total{code="200",endpoint="completions",task="summary"}',
            'mtm_gateway_requests_total{code="400",endpoint="chat_completions",task="summary"}',
        ]:
            assert line in metrics


class TestVllm:
    async def test_chat_through_vllm_completions_with_structured_outputs(
        self, fake_vllm, start_gateway
    ):
        fake, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        fake.text = "neg"
        async with client(gw) as sdk:
            answer = await sdk.chat.completions.create(model="sentiment", messages=user())
            sent = fake.requests[-1]
            assert sent["model"] == "binary"  # the task's adapter
            assert sent["structured_outputs"] == {"regex": "(pos|neg)"}
            assert answer.usage.prompt_tokens == 9 and answer.usage.completion_tokens == 2
            fake.pieces = ["ship", "ping"]
            stream = await sdk.chat.completions.create(
                model="intent", messages=user(), stream=True,
                stream_options={"include_usage": True})
            chunks = [c async for c in stream]
        assert fake.requests[-1]["stream_options"] == {"include_usage": True}
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
            "shipping")
        assert chunks[-1].usage.prompt_tokens == 9

    async def test_vllm_errors_keep_their_status(self, fake_vllm, start_gateway):
        fake, url = fake_vllm
        gw = await start_gateway(url, engine="vllm")
        fake.status = 400
        async with client(gw) as sdk:
            with pytest.raises(openai.BadRequestError, match="bad model name"):
                await sdk.chat.completions.create(model="summary", messages=user())
            with pytest.raises(openai.BadRequestError, match="bad model name"):
                await sdk.chat.completions.create(model="summary", messages=user(),
                                                  stream=True)


class TestStreamsUpstream:
    """What the streaming client sends and passes on (for every endpoint)."""

    async def test_a_4xx_before_the_stream_stays_a_4xx(self, tgi_gateway):
        fake, gw = tgi_gateway
        fake.mode, fake.status = "status", 422
        fake.error = {"error": "Input validation error: too long", "error_type": "validation"}
        status, body = await gw.post("/tasks/summary/generate_stream", {"inputs": "x"})
        assert status == 422
        assert body == {"error": "Input validation error: too long", "error_type": "validation"}

    async def test_no_credential_of_the_gateway_goes_upstream(
        self, tgi_gateway, monkeypatch
    ):
        monkeypatch.setenv("HF_TOKEN", "hf_secret_of_the_gateway")
        fake, gw = tgi_gateway
        async with aiohttp.ClientSession() as session:
            async with session.post(gw.url + "/tasks/summary/generate_stream",
                                    json={"inputs": "x"}) as response:
                await response.read()
        await gw.post("/tasks/summary/generate", {"inputs": "x"})
        assert len(fake.headers) == 2
        for headers in fake.headers:
            assert "Authorization" not in headers
            assert "hf_secret" not in json.dumps(headers)
