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

A third path shows why unary calls do not go through huggingface_hub: the same gateway whose
`/generate` call is `AsyncInferenceClient.text_generation` (an instrument here, not a product
mode). Streams are measured too (p50 time to the last of 4 events, sequential): they go through
aiohttp (upstream/streams.py), so their overhead is reported on its own. The OpenAI API
(`/v1/chat/completions`, unary and streamed) is compared with the upstream calls it makes
(TGI's `/generate` and `/generate_stream`, direct), in the same run.
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
CHAT = {"model": "summary", "max_tokens": 8,
        "messages": [{"role": "user", "content": "How do I get a refund?"}]}
STREAM_EVENTS = 4
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
    events = []
    for i in range(STREAM_EVENTS):
        last = i == STREAM_EVENTS - 1
        event = {"index": i + 1, "token": {"id": i, "text": "x", "logprob": 0.0, "special": False},
                 "generated_text": "x" * STREAM_EVENTS if last else None,
                 "details": {"finish_reason": "length", "generated_tokens": STREAM_EVENTS,
                             "seed": None} if last else None}
        events.append(b"data:" + json.dumps(event).encode() + b"\n\n")

    async def generate(request: web.Request) -> web.StreamResponse:
        if not json.loads(await request.read()).get("stream"):
            return web.Response(body=answer, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    async def health(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.add_routes([web.post("/", generate), web.post("/generate", generate),
                    web.post("/generate_stream", generate), web.get("/health", health)])
    run(app, "127.0.0.1", port)


def run_gateway(port: int, upstream: str, hf_unary: bool = False) -> None:
    from huggingface_hub import AsyncInferenceClient
    from multitask_gateway.app import create_app
    from multitask_gateway.config import parse_config
    from multitask_gateway.serve import run
    from multitask_gateway.upstream import Answer, make_upstream
    from multitask_gateway.upstream.tgi import TgiUpstream

    class HfUnaryTgi(TgiUpstream):
        """The TGI upstream with its unary call made by AsyncInferenceClient.text_generation
        (one long-lived client), as the gateway did before upstream/http1.py."""

        async def generate(self, prompt, parameters):
            params = dict(parameters)
            details = bool(params.pop("details", False))
            if not hasattr(self, "hf"):
                self.hf = AsyncInferenceClient(base_url=self.url, timeout=30)
            output = await self.hf.text_generation(prompt, details=details, **params)
            return Answer(dict(output) if details else {"generated_text": output})

    config = parse_config(CONFIG)
    client = HfUnaryTgi(upstream, 30) if hf_unary else make_upstream("tgi", upstream, 30, "bench")
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


def payload_of(url: str) -> bytes:
    stream = url.endswith("_stream") or url.endswith("#stream")
    chat = url.removesuffix("#stream").endswith("/v1/chat/completions")
    body = CHAT if chat else BODY
    return json.dumps({**body, "stream": True} if stream else body).encode()


async def latencies(session, url: str, count: int) -> list[float]:
    """Sequential requests; a stream's latency is the time to its last event. A URL ending in
    `#stream` is the same endpoint with `"stream": true` (the OpenAI API streams that way)."""
    payload = payload_of(url)
    stream = b'"stream": true' in payload
    target = url.removesuffix("#stream")
    headers = {"Content-Type": "application/json"}
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        async with session.post(target, data=payload, headers=headers) as response:
            body = await response.read()
            assert response.status == 200, (response.status, body)
        samples.append(time.perf_counter() - start)
        if stream and target.endswith("/completions"):
            assert body.endswith(b"data: [DONE]\n\n"), body
        elif stream:
            assert body.count(b"data:") == STREAM_EVENTS, body
    return samples


async def throughput(session, url: str, concurrency: int, seconds: float) -> float:
    payload = payload_of(url)
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
        paths = {
            "direct": urls["direct"] + "/generate",
            "gateway": urls["gateway"] + "/tasks/summary/generate",
            "hf_unary": urls["hf_unary"] + "/tasks/summary/generate",
            "direct_stream": urls["direct"] + "/generate_stream",
            "gateway_stream": urls["gateway"] + "/tasks/summary/generate_stream",
            "gateway_chat": urls["gateway"] + "/v1/chat/completions",
            "gateway_chat_stream": urls["gateway"] + "/v1/chat/completions#stream",
        }
        unary = ("direct", "gateway", "hf_unary", "gateway_chat")
        for url in paths.values():  # warm up connections, caches and the JIT-less hot paths
            await latencies(session, url, 200)
        samples: dict[str, list[float]] = {name: [] for name in paths}
        rounds = 10
        for _ in range(rounds):
            for name, url in paths.items():
                samples[name] += await latencies(session, url, args.requests // rounds)
        rates = {name: None for name in paths}
        for name in unary:
            rates[name] = await throughput(session, paths[name], args.concurrency, args.seconds)
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
    result["stream_overhead_p50_ms"] = (
        result["gateway_stream"]["p50_ms"] - result["direct_stream"]["p50_ms"]
    )
    # The OpenAI API against the same upstream calls it makes (TGI's /generate[_stream]).
    result["chat_overhead_p50_ms"] = result["gateway_chat"]["p50_ms"] - result["direct"]["p50_ms"]
    result["chat_overhead_p99_ms"] = result["gateway_chat"]["p99_ms"] - result["direct"]["p99_ms"]
    result["chat_stream_overhead_p50_ms"] = (
        result["gateway_chat_stream"]["p50_ms"] - result["direct_stream"]["p50_ms"]
    )
    result["chat_throughput_ratio"] = result["gateway_chat"]["rps"] / result["direct"]["rps"]
    return result


def report(result: dict, args: argparse.Namespace, load: float) -> str:
    d, g, h = result["direct"], result["gateway"], result["hf_unary"]
    ds, gs = result["direct_stream"], result["gateway_stream"]
    c, cs = result["gateway_chat"], result["gateway_chat_stream"]

    def row(name: str, r: dict) -> str:
        rate = f"{r['rps']:.0f} req/s" if r["rps"] is not None else "-"
        return f"| {name} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {rate} |"

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
        "measured; all paths were measured in the same run (latency: sequential requests, "
        f"paths alternating; throughput: {args.concurrency} in flight for {args.seconds:g} s).",
        "",
        "| path | p50 latency | p99 latency | throughput |",
        "|---|---|---|---|",
        row("direct to upstream, /generate", d),
        row("through the gateway, /generate", g),
        row("gateway with AsyncInferenceClient for /generate (instrument: the old design)", h),
        row(f"direct to upstream, /generate_stream ({STREAM_EVENTS} events)", ds),
        row(f"through the gateway, /generate_stream ({STREAM_EVENTS} events)", gs),
        row("through the gateway, /v1/chat/completions (upstream: /generate)", c),
        row("through the gateway, /v1/chat/completions streamed (upstream: /generate_stream, "
            f"{STREAM_EVENTS} events)", cs),
        "",
        f"Gateway overhead on /generate: +{result['overhead_p50_ms']:.3f} ms at p50, "
        f"+{result['overhead_p99_ms']:.3f} ms at p99; latency ratio (p50) "
        f"{result['latency_ratio_p50']:.2f}x; throughput ratio {result['throughput_ratio']:.2f} "
        f"({g['rps']:.0f} vs {d['rps']:.0f} req/s).",
        f"With AsyncInferenceClient for the unary call the overhead would be "
        f"+{h['p50_ms'] - d['p50_ms']:.3f} ms at p50 and the throughput {h['rps']:.0f} req/s "
        f"({g['rps'] / h['rps']:.2f}x less than the gateway's).",
        f"Streams: +{result['stream_overhead_p50_ms']:.3f} ms at "
        "p50 to the last event, paid once per stream.",
        f"OpenAI API: /v1/chat/completions adds +{result['chat_overhead_p50_ms']:.3f} ms at p50 "
        f"(+{result['chat_overhead_p99_ms']:.3f} ms at p99) to the upstream's /generate, "
        f"throughput ratio {result['chat_throughput_ratio']:.2f} ({c['rps']:.0f} req/s); "
        f"streamed, +{result['chat_stream_overhead_p50_ms']:.3f} ms at p50 to [DONE].",
        f"Target (overhead under 1 ms at p50, at least 2,000 requests/s on 2 cores): "
        f"/generate {'met' if result['overhead_p50_ms'] < 1 and g['rps'] >= 2000 else 'NOT met'}, "
        "/v1/chat/completions "
        f"{'met' if result['chat_overhead_p50_ms'] < 1 and c['rps'] >= 2000 else 'NOT met'} "
        "in this run.",
        "",
    ])


def record_section(heading: str, section: str) -> None:
    """Replace (or append) the `heading` section of benchmarks/RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
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
    ports = {name: free_port() for name in ("direct", "gateway", "hf_unary")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=run_upstream, args=(ports["direct"],), daemon=True),
        context.Process(target=run_gateway, args=(ports["gateway"], urls["direct"]), daemon=True),
        context.Process(target=run_gateway, args=(ports["hf_unary"], urls["direct"], True),
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
        record_section(SECTION, section)


if __name__ == "__main__":
    main()
