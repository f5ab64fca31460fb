"""End to end: `mtm serve-model` on a tiny random model, `mtm gateway` in front of it, both as
real processes, called through huggingface_hub's clients, the openai SDK and plain HTTP.

The model's weights are random, so its free text is noise: whatever it answers for a
classification task being a label is the label constraint at work (token-prefix masking in
the dev server), not luck.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient
from huggingface_hub.errors import ValidationError

pytestmark = pytest.mark.slow

LABELS = ["refund", "shipping", "other", "über-fast"]  # shared prefixes, a multi-byte character
MTM = str(Path(sys.executable).parent / "mtm")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(process: subprocess.Popen, url: str, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {seconds} s:\n{log.read_text()}")


def start(args: list[str], url: str, log: Path) -> subprocess.Popen:
    handle = log.open("w")
    process = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT)
    wait_healthy(process, url, log)
    return process


@pytest.fixture(scope="module")
def servers(tiny_model, tmp_path_factory):
    from multitask_operator.prompting import format_for_tokenizer
    from transformers import AutoTokenizer

    work = tmp_path_factory.mktemp("e2e")
    fmt = format_for_tokenizer(AutoTokenizer.from_pretrained(tiny_model))
    config = {
        "model": "tiny",
        "promptFormat": {"prefix": fmt.prefix, "suffix": fmt.suffix, "source": fmt.source},
        "limits": {"maxNewTokens": 32, "defaultMaxNewTokens": 8},
        "tasks": [
            {"name": "intent", "type": "classification", "instruction": "Classify the intent.",
             "labels": LABELS, "service": "intent-svc"},
            {"name": "summary", "type": "generation", "instruction": "Summarise."},
        ],
    }
    (work / "gateway.json").write_text(json.dumps(config))
    model_port, gateway_port = free_port(), free_port()
    model_url = f"http://127.0.0.1:{model_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    processes = []
    try:
        processes.append(start([MTM, "serve-model", str(tiny_model), "--port", str(model_port)],
                               model_url, work / "model.log"))
        processes.append(start([MTM, "gateway", "--config", str(work / "gateway.json"),
                                "--upstream", model_url, "--port", str(gateway_port),
                                "--host", "127.0.0.1"], gateway_url, work / "gateway.log"))
        yield {"model": model_url, "gateway": gateway_url}
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)


def test_classification_is_always_a_label(servers):
    client = InferenceClient(base_url=servers["gateway"] + "/tasks/intent")
    answers = [
        client.text_generation("where is my parcel", do_sample=True, temperature=5.0, seed=seed)
        for seed in range(12)
    ]
    assert set(answers) <= set(LABELS)
    # Sampling at a high temperature over random weights reaches several labels: the answers
    # come from decoding, not from a fixed fallback.
    assert len(set(answers)) >= 2


def test_task_api_and_host_routing_over_plain_http(servers):
    host, port = servers["gateway"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = json.dumps({"inputs": "money back please"})
    # An old client of intent-svc: its Service now points at the gateway.
    connection.request("POST", "/generate", body, {"Host": "intent-svc.shop.svc.cluster.local",
                                                    "Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["generated_text"] in LABELS
    connection.request("POST", "/v1/tasks/intent", json.dumps({"input": "broken item"}))
    answer = json.loads(connection.getresponse().read())
    assert answer["task"] == "intent" and answer["label"] in LABELS
    assert answer["output"] == answer["label"]


def test_generation_and_details(servers):
    client = InferenceClient(base_url=servers["gateway"] + "/tasks/summary")
    output = client.text_generation("a long story", max_new_tokens=6, details=True)
    assert output.details.generated_tokens <= 6
    assert output.details.finish_reason in ("length", "eos_token")
    assert len(output.details.tokens) == output.details.generated_tokens
    # Greedy decoding is deterministic: the same request gives the same text.
    assert client.text_generation("a long story", max_new_tokens=6) == output.generated_text


async def test_streaming_order_matches_the_full_answer(servers):
    async with AsyncInferenceClient(base_url=servers["gateway"] + "/tasks/summary") as client:
        full = await client.text_generation("tell me", max_new_tokens=10)
        events = [e async for e in await client.text_generation(
            "tell me", max_new_tokens=10, stream=True, details=True)]
    assert "".join(e.token.text for e in events) == full
    assert events[-1].generated_text == full
    assert all(e.generated_text is None for e in events[:-1])
    assert [e.index for e in events] == sorted(e.index for e in events)


async def test_streamed_classification_is_a_label(servers):
    async with AsyncInferenceClient(base_url=servers["gateway"] + "/tasks/intent") as client:
        for seed in range(4):
            events = [e async for e in await client.text_generation(
                "x", stream=True, details=True, do_sample=True, temperature=5.0, seed=seed)]
            assert events[-1].generated_text in LABELS
            assert "".join(e.token.text for e in events) == events[-1].generated_text


def test_limits_reach_the_client_as_tgi_errors(servers):
    client = InferenceClient(base_url=servers["gateway"] + "/tasks/summary")
    with pytest.raises(ValidationError, match="max_new_tokens must be between 1 and 32"):
        client.text_generation("x", max_new_tokens=33)


def test_dev_server_enforces_label_grammars_itself(servers):
    client = InferenceClient(base_url=servers["model"])
    grammar = {"type": "regex", "value": "(yes|no)"}
    for seed in range(4):
        answer = client.text_generation("?", grammar=grammar, do_sample=True, temperature=5.0,
                                        seed=seed, max_new_tokens=4)
        assert answer in ("yes", "no")
    with pytest.raises(ValidationError, match="only alternations of literal strings"):
        client.text_generation("?", grammar={"type": "regex", "value": "[a-z]+"})


def test_openai_sdk_gets_labels_and_real_usage(servers):
    sdk = openai.OpenAI(base_url=servers["gateway"] + "/v1", api_key="unused", max_retries=0)
    assert {m.id for m in sdk.models.list()} == {"intent", "intent-svc", "summary"}
    for seed in range(4):
        answer = sdk.chat.completions.create(
            model="intent", messages=[{"role": "user", "content": "where is my parcel"}],
            temperature=2.0, seed=seed)
        assert answer.choices[0].message.content in LABELS
        # Counted by the model server's tokenizer: the templated prompt, then the label's
        # tokens (at least one; a label of several tokens takes several).
        assert answer.usage.prompt_tokens > len("where is my parcel") // 4
        assert answer.usage.completion_tokens >= 1
        stream = sdk.chat.completions.create(
            model="intent", messages=[{"role": "user", "content": "refund?"}], stream=True,
            stream_options={"include_usage": True}, temperature=2.0, seed=seed)
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text in LABELS
        assert chunks[-1].usage.total_tokens == (chunks[-1].usage.prompt_tokens
                                                 + chunks[-1].usage.completion_tokens)
    assert sdk.completions.create(model="intent", prompt="refund?").choices[0].text in LABELS
    # An old client of intent's own vLLM service: its model id, the task from X-Task.
    answer = sdk.chat.completions.create(
        model="intent-v3-finetuned", messages=[{"role": "user", "content": "broken"}],
        extra_headers={"X-Task": "intent"})
    assert answer.choices[0].message.content in LABELS
    # Greedy generation is deterministic, streamed or not.
    summary = sdk.chat.completions.create(
        model="summary", messages=[{"role": "user", "content": "a long story"}], max_tokens=6)
    pieces = sdk.chat.completions.create(
        model="summary", messages=[{"role": "user", "content": "a long story"}], max_tokens=6,
        stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in pieces) == (
        summary.choices[0].message.content)
    assert summary.usage.completion_tokens <= 6
    # huggingface_hub's chat client, the other common way to call an OpenAI-style server.
    hub = InferenceClient(base_url=servers["gateway"] + "/v1")
    answer = hub.chat_completion([{"role": "user", "content": "refund?"}], model="intent")
    assert answer.choices[0].message.content in LABELS
    with pytest.raises(openai.BadRequestError, match="max_tokens: must be at most 32"):
        sdk.chat.completions.create(model="summary", max_tokens=33,
                                    messages=[{"role": "user", "content": "x"}])


def test_mtm_gateway_reports_a_bad_config(tmp_path):
    bad = tmp_path / "gateway.json"
    bad.write_text(json.dumps({"tasks": [{"name": "x", "type": "ranking", "instruction": "i"}]}))
    done = subprocess.run([MTM, "gateway", "--config", str(bad), "--upstream", "http://h:1"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{bad}: tasks[0].type must be classification or generation" in done.stderr
