"""What the gateway costs: latency and throughput through it vs straight to the upstream.

    .venv/bin/python benchmarks/gateway_overhead.py [--requests 2000] [--concurrency 32]
                                                    [--seconds 5] [--record]

On loopback, three processes: a minimal fast upstream (an aiohttp app that answers TGI's `/`
with a fixed body, so that the gateway itself is what is measured), the gateway (`Gateway`
with the TGI upstream client, exactly what `mtm gateway` runs) and this load generator.
Latency: sequential requests, p50/p99, alternating the paths round by round so that all see
the same machine state. Throughput: `--concurrency` requests in flight for `--seconds`, each
way. The ratios compare the paths measured in the same run. `--record` writes the
`## Gateway overhead` section of benchmarks/RESULTS.md.

A third path attributes the cost: the same gateway whose upstream call is a bare aiohttp POST
instead of huggingface_hub's AsyncInferenceClient (an instrument here, not a product mode).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import socket
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Gateway overhead"
BODY = {"inputs": "How do I get a refund?", "parameters": {"max_new_tokens": 8}}
CONFIG = {
    "model": "bench",
    "limits": {"maxConcurrencyPerTask": 100000, "maxNewTokens": 64},
    "tasks": [{"name": "summary", "type": "generation", "instruction": "Summarise."}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_upstream(port: int) -> None:
    from aiohttp import web
    from multitask_gateway.serve import run

    answer = json.dumps({"generated_text": "a fixed answer"}).encode()

    async def generate(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.add_routes([web.post("/", generate), web.post("/generate", generate),
                    web.get("/health", health)])
    run(app, "127.0.0.1", port)


def run_gateway(port: int, upstream: str, bare: bool = False) -> None:
    import aiohttp
    from multitask_gateway.app import create_app
    from multitask_gateway.config import parse_config
    from multitask_gateway.serve import run
    from multitask_gateway.upstream import make_upstream
    from multitask_gateway.upstream.tgi import TgiUpstream

    class BareTgi(TgiUpstream):
        """The TGI upstream with its non-streaming call done by a bare aiohttp session."""

        async def start(self) -> None:
            await super().start()
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

        async def close(self) -> None:
            await self.session.close()
            await super().close()

        async def generate(self, prompt, parameters):
            body = {"inputs": prompt, "parameters": parameters}
            async with self.session.post(self.url + "/generate", json=body) as response:
                return await response.json()

    config = parse_config(CONFIG)
    client = BareTgi(upstream, 30) if bare else make_upstream("tgi", upstream, 30, "bench")
    run(create_app(config, client), "127.0.0.1", port)


async def wait_up(session, url: str, process) -> None:
    for _ in range(300):
        if not process.is_alive():
            raise RuntimeError(f"the server for {url} exited with {process.exitcode}")
        try:
            async with session.get(url + "/health") as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def latencies(session, url: str, count: int) -> list[float]:
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        async with session.post(url, data=payload, headers=headers) as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append(time.perf_counter() - start)
    return samples


async def throughput(session, url: str, concurrency: int, seconds: float) -> float:
    payload = json.dumps(BODY).encode()
    headers = {"Content-Type": "application/json"}
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            async with session.post(url, data=payload, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace, urls: dict[str, str], processes) -> dict:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for url, process in zip(urls.values(), processes, strict=True):
            await wait_up(session, url, process)
        paths = {"direct": urls["direct"] + "/"}
        for name in ("gateway", "bare"):
            paths[name] = urls[name] + "/tasks/summary/generate"
        for url in paths.values():  # warm up connections, caches and the JIT-less hot paths
            await latencies(session, url, 200)
        samples: dict[str, list[float]] = {name: [] for name in paths}
        rounds = 10
        for _ in range(rounds):
            for name, url in paths.items():
                samples[name] += await latencies(session, url, args.requests // rounds)
        rates = {name: 0.0 for name in paths}
        for name, url in paths.items():
            rates[name] = await throughput(session, url, args.concurrency, args.seconds)
    result = {}
    for name in paths:
        result[name] = {
            "p50_ms": statistics.median(samples[name]) * 1000,
            "p99_ms": percentile(samples[name], 0.99) * 1000,
            "rps": rates[name],
        }
    result["overhead_p50_ms"] = result["gateway"]["p50_ms"] - result["direct"]["p50_ms"]
    result["overhead_p99_ms"] = result["gateway"]["p99_ms"] - result["direct"]["p99_ms"]
    result["latency_ratio_p50"] = result["gateway"]["p50_ms"] / result["direct"]["p50_ms"]
    result["throughput_ratio"] = result["gateway"]["rps"] / result["direct"]["rps"]
    return result


def report(result: dict, args: argparse.Namespace, load: float) -> str:
    d, g, b = result["direct"], result["gateway"], result["bare"]
    cores = os.cpu_count()
    return "\n".join([
        SECTION,
        "",
        f"Command: `.venv/bin/python benchmarks/gateway_overhead.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --seconds {args.seconds:g} --record`",
        f"Machine: {cores} CPU cores ({platform.machine()}, Python {platform.python_version()}); "
        "upstream, gateway and load generator share them, on loopback; load average "
        f"{load:.1f} when the run started (other work on the machine adds noise, mostly to p99).",
        "The upstream is a minimal aiohttp app with a fixed answer, so the gateway is what is "
        "measured; both paths were measured in the same run.",
        "",
        "| path | p50 latency | p99 latency | throughput |",
        "|---|---|---|---|",
        f"| direct to upstream | {d['p50_ms']:.3f} ms | {d['p99_ms']:.3f} ms | "
        f"{d['rps']:.0f} req/s |",
        f"| through the gateway | {g['p50_ms']:.3f} ms | {g['p99_ms']:.3f} ms | "
        f"{g['rps']:.0f} req/s |",
        f"| gateway, bare aiohttp upstream call (attribution only) | {b['p50_ms']:.3f} ms | "
        f"{b['p99_ms']:.3f} ms | {b['rps']:.0f} req/s |",
        "",
        f"Gateway overhead: +{result['overhead_p50_ms']:.3f} ms at p50, "
        f"+{result['overhead_p99_ms']:.3f} ms at p99; latency ratio (p50) "
        f"{result['latency_ratio_p50']:.2f}x; throughput ratio {result['throughput_ratio']:.2f}.",
        f"Of the p50 overhead, {b['p50_ms'] - d['p50_ms']:.3f} ms is the gateway's own work "
        "(HTTP server, routing, prompt, limits, metrics) and "
        f"{g['p50_ms'] - b['p50_ms']:.3f} ms is huggingface_hub's AsyncInferenceClient "
        "(httpx request building, token lookup, a thread hop per response).",
        "",
    ])


def record(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput run, per path")
    parser.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    ports = {name: free_port() for name in ("direct", "gateway", "bare")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=run_upstream, args=(ports["direct"],), daemon=True),
        context.Process(target=run_gateway, args=(ports["gateway"], urls["direct"]), daemon=True),
        context.Process(target=run_gateway, args=(ports["bare"], urls["direct"], True),
                        daemon=True),
    ]
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
    section = report(result, args, load)
    print(section)
    print(json.dumps(result, indent=2), file=sys.stderr)
    if args.record:
        record(section)


if __name__ == "__main__":
    main()
