"""What a handover costs the requests it splits, and what the live one looks like.

    .venv/bin/python benchmarks/handover.py [--requests 2000] [--concurrency 32] [--seconds 5]
                                            [--timeline] [--record]

On loopback: a minimal upstream plays both the old per-task backend and the unified model's
inference server (a fixed answer, so the gateway is what is measured), and one gateway process
per rollout setting, all called through the task's old Service name (the Host header), as the
clients of a taken-over Service call it:

- direct to the old backend (the baseline: what those clients had before the cutover);
- Immediate (no rollout): the gateway answers from the unified model;
- Shadow, no comparison (weight 0, sampleRate ~0): the gateway passes each request through to
  the old backend, streaming its answer back;
- Shadow, every request compared (sampleRate 1): the old backend's answer is buffered, returned,
  and the request is also sent to the unified model in the background and the answers compared;
- Canary 100 %, every request compared: answered by the unified model, mirrored to the old one.

Latency: sequential requests, p50/p99, paths alternating round by round. Throughput:
`--concurrency` requests in flight for `--seconds`. Ratios are against the direct path, in the
same run. `--timeline` also runs tests/operator/test_handover_integration.py (the operator on
the emulator, a real gateway process, two old services that agree / start to disagree) and
reports its timeline and its count of non-2xx answers. `--record` writes the `## Handover`
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway_overhead import (  # noqa: E402 - a sibling script, not a package
    BODY,
    free_port,
    percentile,
    record_section,
    run_upstream,
    wait_up,
)

SECTION = "## Handover"
HOST = {"Host": "summary-svc.shop.svc", "Content-Type": "application/json"}
ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "direct": "direct to the old backend (baseline)",
    "immediate": "Immediate: gateway -> unified model",
    "shadow": "Shadow, no comparison: gateway -> old backend (pass-through)",
    "shadow_compared": "Shadow, every request compared (old backend answers, unified mirrored)",
    "canary_compared": "Canary 100 %, every request compared (unified answers, old mirrored)",
}


def config(legacy: str | None, weight: int, sample: float) -> dict:
    task = {"name": "summary", "type": "generation", "instruction": "Summarise.",
            "service": "summary-svc"}
    if legacy:
        task["rollout"] = {"legacy": legacy, "weight": weight, "sampleRate": sample,
                           "step": "bench"}
    return {"model": "bench", "limits": {"maxConcurrencyPerTask": 100000, "maxNewTokens": 64},
            "tasks": [task]}


def run_gateway(port: int, upstream: str, cfg: dict) -> None:
    from multitask_gateway.app import create_app
    from multitask_gateway.config import parse_config
    from multitask_gateway.serve import run
    from multitask_gateway.upstream import make_upstream

    run(create_app(parse_config(cfg), make_upstream("tgi", upstream, 30, "bench")),
        "127.0.0.1", port)


async def latencies(session, url: str, count: int) -> list[float]:
    payload = json.dumps(BODY).encode()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        async with session.post(url + "/generate", data=payload, headers=HOST) as response:
            body = await response.read()
            assert response.status == 200, (response.status, body)
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(session, url: str, concurrency: int, seconds: float) -> float:
    payload = json.dumps(BODY).encode()
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url + "/generate", data=payload, headers=HOST) as response:
                await response.read()
                assert response.status == 200, response.status
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def measure(args: argparse.Namespace, urls: dict[str, str], processes) -> dict:
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for url, process in zip(urls.values(), processes, strict=True):
            await wait_up(session, url, process)
        samples: dict[str, list[float]] = {name: [] for name in urls}
        rounds = 10
        for _ in range(rounds):
            for name, url in urls.items():
                samples[name] += await latencies(session, url, args.requests // rounds)
        await asyncio.sleep(0.5)  # let the background comparisons finish
        rates = {name: await throughput(session, url, args.concurrency, args.seconds)
                 for name, url in urls.items()}
        metrics = {}
        for name in ("shadow_compared", "canary_compared"):
            async with session.get(urls[name] + "/metrics") as response:
                text = await response.text()
            metrics[name] = {line.split("{")[0]: line.rsplit(" ", 1)[1] for line in
                             text.splitlines() if line.startswith(
                                 ("mtm_gateway_rollout_compared_total",
                                  "mtm_gateway_rollout_agreed_total"))}
    return {name: {"p50_ms": percentile(s, 0.5) * 1000, "p99_ms": percentile(s, 0.99) * 1000,
                   "rps": rates[name]} for name, s in samples.items()} | {"metrics": metrics}


def timeline() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "timeline.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/operator/test_handover_integration.py"], cwd=ROOT, check=True,
                       env={**os.environ, "MTM_HANDOVER_TIMELINE": str(out)})
        report = json.loads(out.read_text())
        report["seconds"] = time.perf_counter() - started
        return report


def report(result: dict, args: argparse.Namespace, load: float, live: dict | None) -> str:
    base = result["direct"]
    lines = [
        SECTION, "",
        "Command: `.venv/bin/python benchmarks/handover.py "
        f"--requests {args.requests} --concurrency {args.concurrency} --seconds {args.seconds:g}"
        f"{' --timeline' if live else ''} --record`",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
        f"{platform.python_version()}); upstream, gateways and load generator share them, on "
        f"loopback; load average {load:.1f} at the start. One minimal upstream plays the old "
        "backend and the unified model; requests carry the old Service's name as Host.", "",
        "| path | p50 latency | p99 latency | throughput | p50 vs direct | throughput vs direct |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in PATHS.items():
        r = result[name]
        lines.append(f"| {label} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
                     f"{r['rps']:.0f} req/s | {r['p50_ms'] / base['p50_ms']:.2f}x | "
                     f"{r['rps'] / base['rps']:.2f} |")
    shadow, immediate = result["shadow"], result["immediate"]
    compared = result["shadow_compared"]
    lines += ["",
              f"Pass-through to the old backend adds {shadow['p50_ms'] - base['p50_ms']:+.3f} ms "
              f"at p50 (Immediate through the gateway: {immediate['p50_ms'] - base['p50_ms']:+.3f}"
              f" ms); comparing every request changes the client's p50 by "
              f"{compared['p50_ms'] - shadow['p50_ms']:+.3f} ms (its answer is buffered rather "
              "than streamed, and the mirror runs after it is sent) and costs "
              f"throughput ({compared['rps']:.0f} vs {shadow['rps']:.0f} req/s): lower "
              "sampleRate under heavy load.",
              f"Comparisons counted: {json.dumps(result['metrics'])}."]
    if live:
        lines += ["", "Live handover (`tests/operator/test_handover_integration.py`, "
                  f"{live['seconds']:.0f} s with start-up): rollout canary with shadowFirst, "
                  "steps [50, 100], intervalSeconds 3, minRequests 20, agreementFloor 0.9; "
                  "the old intent service is told to disagree on every other request once intent "
                  "is at canary 50 %.", "",
                  "| t (s) | task | state | weight | compared | agreement |",
                  "|---|---|---|---|---|---|"]
        for e in live["timeline"]:
            agreement = "" if e["agreement"] is None else f"{e['agreement']:.2f}"
            lines.append(f"| {e['t']} | {e['task']} | {e['state']} | {e['weight']} | "
                         f"{e['requests'] if e['requests'] is not None else ''} | {agreement} |")
        lines += ["", f"Client requests through the two Services: {live['requests']} "
                  f"({live['by_side']['gateway']} while on the gateway, "
                  f"{live['by_side']['old pods']} on the old pods); non-2xx answers: "
                  f"**{live['non_2xx']}**."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run, per path")
    parser.add_argument("--timeline", action="store_true", help="run the live handover too")
    parser.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    upstream_port = free_port()
    upstream = f"http://127.0.0.1:{upstream_port}"
    settings = {"immediate": config(None, 0, 1.0), "shadow": config(upstream, 0, 1e-9),
                "shadow_compared": config(upstream, 0, 1.0),
                "canary_compared": config(upstream, 100, 1.0)}
    ports = {"direct": upstream_port} | {name: free_port() for name in settings}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_upstream, args=(upstream_port,), daemon=True)]
    processes += [context.Process(target=run_gateway, args=(ports[name], upstream, cfg),
                                  daemon=True) for name, cfg in settings.items()]
    for process in processes:
        process.start()
    try:
        from multitask_gateway.serve import new_loop

        with asyncio.Runner(loop_factory=new_loop) as runner:
            result = runner.run(measure(args, urls, processes))
    finally:
        for process in processes:
            process.terminate()
            process.join(10)
    live = timeline() if args.timeline else None
    section = report(result, args, load, live)
    print(section)
    if args.record:
        record_section(SECTION, section)


if __name__ == "__main__":
    main()
