"""`mtm run --serve`: the exported model behind the gateway, on localhost.

Two child processes, as on a cluster two Deployments: the development inference stand-in
(`mtm serve-model`, TGI's API on a CPU; production runs TGI or vLLM) and the gateway (`mtm
gateway`) routing the qualified tasks with the same config the operator renders. Ctrl-C stops
both.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from ..render.gateway import gateway_config
from ..render.tasks import RoutedTask

if TYPE_CHECKING:
    from .pipeline import RunResult

READY_TIMEOUT_SECONDS = 120


def routed_tasks(
    export_dir: Path, qualified: list[str], services: dict[str, str]
) -> list[RoutedTask]:
    """The qualified tasks as the export describes them (labels as trained)."""
    exported = json.loads((export_dir / "tasks.json").read_text())["tasks"]
    return [
        RoutedTask(
            name=t["name"],
            type=t["type"],
            instruction=t["instruction"],
            labels=tuple(t["labels"]) if t.get("labels") else None,
            adapter=t.get("adapter"),
            service=services.get(t["name"]),
        )
        for t in exported
        if t["name"] in qualified
    ]


def _wait_healthy(url: str, child: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"{what} exited with code {child.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not become healthy at {url} in {READY_TIMEOUT_SECONDS}s")


def _example_curl(port: int, task: RoutedTask) -> str:
    body = json.dumps({"input": "Hello, I want my money back for the laptop, order #A1234."})
    return (
        f"curl -s localhost:{port}/v1/tasks/{task.name} -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )


def _example_openai(port: int, task: RoutedTask) -> str:
    """The same call through the OpenAI API (the openai SDK posts exactly this)."""
    body = json.dumps({"model": task.name, "messages": [
        {"role": "user", "content": "Hello, I want my money back for the laptop."}]})
    return (
        f"curl -s localhost:{port}/v1/chat/completions -H 'Content-Type: application/json' "
        f"-d '{body}'"
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_locally(result: RunResult, port: int) -> None:
    spec = result.document.model.spec
    qualified = result.report["qualified"]
    export_dir = result.workspace.export_dir
    if not qualified:
        print("no task qualified for the unified model: nothing to serve")
        return
    services = {t.name: t.service.name for t in spec.tasks if t.service}
    tasks = routed_tasks(export_dir, qualified, services)
    prompt = json.loads((export_dir / "prompt_format.json").read_text())
    name = result.document.model.metadata.name
    config = gateway_config(name, spec, "local", tasks, prompt)
    config_file = result.workspace.root / "serve" / "gateway.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(config, indent=2))

    mtm = [sys.executable, "-m", "multitask_operator.cli"]
    upstream_port = port + 1
    children: list[subprocess.Popen] = []
    # `kill`, a closed terminal or a process manager stop us as Ctrl-C does: through `finally`,
    # which stops the model server and the gateway (Python's default for SIGTERM would exit at
    # once and leave both running, holding their ports).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        model = subprocess.Popen(
            [*mtm, "serve-model", str(export_dir), "--port", str(upstream_port)]
        )
        children.append(model)
        _wait_healthy(f"http://127.0.0.1:{upstream_port}/health", model, "the model server")
        gateway = subprocess.Popen(
            [
                *mtm,
                "gateway",
                "--config",
                str(config_file),
                "--upstream",
                f"http://127.0.0.1:{upstream_port}",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
        )
        children.append(gateway)
        _wait_healthy(f"http://127.0.0.1:{port}/health", gateway, "the gateway")
        print(f"serving {len(tasks)} tasks on http://127.0.0.1:{port} (Ctrl-C stops); try:")
        for task in tasks:
            print("  " + _example_curl(port, task))
        print("or through the OpenAI API (every task is a model; the openai SDK works with "
              f"base_url='http://127.0.0.1:{port}/v1'):")
        for task in tasks:
            print("  " + _example_openai(port, task))
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping")
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
