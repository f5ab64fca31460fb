"""The gateway benchmarks run end to end on tiny numbers (so that they do not rot); their
figures are not checked here: timings belong in benchmarks/RESULTS.md, not in tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_gateway_overhead_measures_every_path():
    out = run_benchmark("benchmarks/gateway_overhead.py", "--requests", "40", "--concurrency",
                        "4", "--seconds", "0.3")
    assert out.startswith("## Gateway overhead")
    for path in ("direct to upstream, /generate", "through the gateway, /generate",
                 "gateway with AsyncInferenceClient", "through the gateway, /generate_stream",
                 "through the gateway, /v1/chat/completions (",
                 "through the gateway, /v1/chat/completions streamed"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {path}"))
        assert re.search(r"\d+\.\d{3} ms \| \d+\.\d{3} ms", row), row
    assert re.search(r"throughput ratio \d+\.\d\d \(\d+ vs \d+ req/s\)", out)
    assert re.search(r"/v1/chat/completions adds \+-?\d+\.\d{3} ms at p50", out)


@pytest.mark.slow
def test_upstream_clients_compares_the_three_clients():
    out = run_benchmark("benchmarks/upstream_clients.py", "--calls", "30", "--rounds", "1")
    rows = [line for line in out.splitlines() if re.match(r"\| .* \| \d+ us \| \d+ us \|", line)]
    assert [row.split(" | ")[0] for row in rows] == [
        "| http1 pool (the gateway)", "| aiohttp ClientSession",
        "| AsyncInferenceClient.text_generation",
    ]
    assert rows[0].endswith("| 1.00x |")
