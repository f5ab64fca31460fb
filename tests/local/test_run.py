"""`mtm run` end to end on a reduced example: report, plots, resume after Ctrl-C, refusal of a
workspace made for another spec. Real trainer processes on a tiny model (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
import yaml
from huggingface_hub import InferenceClient

from tests.local.reduced import jsonl, write_intent_and_mood

pytestmark = pytest.mark.slow
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """Three tasks (two classification, one generation) and a tiny model, a few steps each."""
    root = tmp_path_factory.mktemp("example")
    write_intent_and_mood(root, intents=48, moods=24)
    jsonl(root / "echo.jsonl", [(f"say {i}", f"{i}") for i in range(16)])
    spec = {
        "apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
        "metadata": {"name": "reduced"},
        "spec": {
            "baseModel": {"path": "model"},
            "tasks": [
                {"name": "intent", "type": "classification", "instruction": "Intent?",
                 "data": {"train": "intent.jsonl"}, "baseline": {"score": 0.5}},
                {"name": "mood", "type": "classification", "instruction": "Mood?",
                 "data": {"train": "mood.jsonl"}, "baseline": {"score": 0.5}},
                {"name": "echo", "type": "generation", "instruction": "Echo.",
                 "data": {"train": "echo.jsonl"}, "baseline": {"score": 0.1}},
            ],
            "recipe": {"highResourceThreshold": 40},
            "training": {"method": "full", "learningRate": 3e-3, "batchSize": 8, "maxSteps": 4,
                         "checkpointEvery": 2, "maxSeqLength": 64},
            "serving": {"resources": {"gpus": 1}},
        },
    }
    (root / "model.yaml").write_text(yaml.safe_dump(spec))
    return root / "model.yaml"


def mtm(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "multitask_operator.cli", *args],
                          capture_output=True, text=True, check=False, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def finished(example, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One complete run, shared by the tests that only read its workspace."""
    ws = tmp_path_factory.mktemp("finished") / "ws"
    return ws, mtm("run", str(example), "--workspace", str(ws))


def test_run_writes_the_report(example, finished):
    ws, done = finished
    assert done.returncode == 0, done.stdout + done.stderr
    assert "serving GPUs: 3 before" in done.stdout
    report = json.loads((ws / "report" / "results.json").read_text())
    tasks = {t["name"]: t for t in report["tasks"]}
    assert set(tasks) == {"intent", "mood", "echo"}
    assert tasks["echo"]["included"] is False and "filtered out" in tasks["echo"]["reason"]
    for name in ("intent", "mood"):
        t = tasks[name]
        assert t["included"] and t["score"] is not None and t["baseline"] == 0.5
        assert t["ratio"] == pytest.approx(t["score"] / 0.5)
        assert t["qualified"] == (t["score"] >= 0.99 * 0.5)
    assert [s["stage"] for s in report["training"]] == ["stage1", "stage2"]
    assert all(s["finalLoss"] is not None for s in report["training"])
    serving = report["serving"]
    assert serving["gpusBefore"] == 3
    moved = len(report["qualified"])
    assert serving["gpusAfter"] == (3 if moved == 0 else 1 + 3 - moved)
    for name in ("mixtures.png", "loss.png", "scores.png", "gpus.png"):
        data = (ws / "report" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000, name
    assert "![scores.png](scores.png)" in (ws / "report" / "report.md").read_text()

    # A rerun finds everything finished and only rewrites the report.
    again = mtm("run", str(example), "--workspace", str(ws))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already finished") == 4  # stage1, stage2, evaluate, export

    # The same workspace with a different spec is refused, not mixed.
    changed = example.with_name("changed.yaml")
    text = example.read_text().replace("Intent?", "What is the intent?")
    changed.write_text(text)
    refused = mtm("run", str(changed), "--workspace", str(ws))
    assert refused.returncode == 1
    assert "different spec" in refused.stderr


def test_ctrl_c_stops_and_a_rerun_resumes(example, tmp_path):
    ws = tmp_path / "ws"
    command = [sys.executable, "-m", "multitask_operator.cli", "run", str(example),
               "--workspace", str(ws)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
    deadline = time.monotonic() + 300
    # Interrupt once stage 1 has finished (its final model is published).
    while not (ws / "stages" / "stage1" / "final" / "COMPLETE").exists():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=120)
    if child.returncode == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert child.returncode == 130, out + err
    assert "run the same command again to resume" in err
    resumed = mtm("run", str(example), "--workspace", str(ws))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "skip stage1: already finished" in resumed.stdout
    assert (ws / "report" / "results.json").is_file()


def test_invalid_input_is_refused_before_training(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: multitask.ai/v1alpha1\nkind: MultiTaskModel\n"
                   "metadata: {name: x}\nspec:\n  baseModel: {path: m}\n  tasks:\n"
                   "  - name: a\n    type: classification\n    instruction: go\n"
                   "    data: {train: missing.jsonl}\n")
    done = mtm("run", str(bad), "--workspace", str(tmp_path / "ws"))
    assert done.returncode == 1
    assert "missing.jsonl: spec.tasks[0].data.train: file not found" in done.stderr
    assert not (tmp_path / "ws").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_through_the_gateway(example, finished):
    """--serve: the exported model behind the gateway answers the qualified tasks' routes."""
    import urllib.request

    ws, first = finished
    assert first.returncode == 0, first.stderr
    qualified = json.loads((ws / "report" / "results.json").read_text())["qualified"]
    port = _free_port()
    command = [sys.executable, "-m", "multitask_operator.cli", "run", str(example),
               "--workspace", str(ws), "--serve", "--port", str(port)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 180
        while not any("(Ctrl-C stops)" in line or "nothing to serve" in line
                      for line in lines):
            line = child.stdout.readline()
            assert line or child.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        if not qualified:
            assert any("nothing to serve" in line for line in lines)
            return
        task = qualified[0]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/tasks/{task}", method="POST",
            data=json.dumps({"input": "refund please 7"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        assert answer["task"] == task
        labels = {"intent": {"refund", "shipping", "cancel", "account"},
                  "mood": {"positive", "negative"}}[task]
        assert answer["label"] in labels
        # The openai SDK, as the printed example says: every qualified task is a model, and
        # every answer a label, streamed or not, by model name or by X-Task.
        while not any("/v1/chat/completions" in line for line in lines):
            lines.append(child.stdout.readline())
            assert time.monotonic() < deadline, "".join(lines)
        assert any(f"base_url='http://127.0.0.1:{port}/v1'" in line for line in lines)
        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        assert {m.id for m in sdk.models.list()} >= set(qualified)
        for name in qualified:
            labels = {"intent": {"refund", "shipping", "cancel", "account"},
                      "mood": {"positive", "negative"}}[name]
            message = [{"role": "user", "content": "refund please 7"}]
            answer = sdk.chat.completions.create(model=name, messages=message)
            assert answer.choices[0].message.content in labels
            chunks = list(sdk.chat.completions.create(model=name, messages=message,
                                                      stream=True))
            assert "".join(c.choices[0].delta.content or "" for c in chunks) in labels
            assert sdk.completions.create(model=name, prompt="7").choices[0].text in labels
            answer = sdk.chat.completions.create(model="tgi", messages=message,
                                                 extra_headers={"X-Task": name})
            assert answer.choices[0].message.content in labels
            hub = InferenceClient(base_url=f"http://127.0.0.1:{port}/v1")
            assert hub.chat_completion(message, model=name).choices[0].message.content in labels

            async def streamed_async(task: str = name, chat: list = message) -> str:
                async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                                              api_key="x", max_retries=0) as client:
                    stream = await client.chat.completions.create(
                        model=task, messages=chat, stream=True)
                    return "".join([c.choices[0].delta.content or "" async for c in stream])
            assert asyncio.run(streamed_async()) in labels
        # SIGTERM to `mtm run` alone (as `kill` sends it) stops the servers it started too.
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 0
        for server_port in (port, port + 1):
            with socket.socket() as sock:
                assert sock.connect_ex(("127.0.0.1", server_port)) != 0, server_port
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
            child.wait(timeout=60)
