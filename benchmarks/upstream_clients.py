"""What one unary call to the inference server costs the gateway, by HTTP client.

    .venv/bin/python benchmarks/upstream_clients.py [--calls 2000] [--rounds 3] [--record]

The same TGI `/generate` call, made sequentially from this process to a minimal upstream in
another (benchmarks/gateway_overhead.py's), with three clients: the gateway's lean pool
(multitask_gateway/upstream/http1.py), an aiohttp ClientSession, and
huggingface_hub's `AsyncInferenceClient.text_generation` (one long-lived client on its own httpx
pool). Reported: CPU time of this
process per call (the client's cost, including its socket system calls) and wall time per call,
the median over `--rounds` rounds that alternate the clients. `--record` writes the
`## Gateway upstream clients` section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import time

from gateway_overhead import free_port, record_section, run_upstream, wait_up

SECTION = "## Gateway upstream clients"
PROMPT = "How do I get a refund?"


async def measure(url: str, calls: int, rounds: int, process) -> dict[str, dict[str, float]]:
    import aiohttp
    from huggingface_hub import AsyncInferenceClient
    from multitask_gateway.upstream.http1 import Http1Pool

    body = json.dumps({"inputs": PROMPT, "parameters": {"max_new_tokens": 8},
                       "stream": False}).encode()
    headers = {"Content-Type": "application/json"}
    pool = Http1Pool(url, 30)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    # One long-lived client: a unary call enters nothing into its exit stack, so nothing grows.
    hf = AsyncInferenceClient(base_url=url, timeout=30)

    async def lean() -> None:
        reply = await pool.request("POST", "/generate", body)
        assert json.loads(reply.body)["generated_text"]

    async def aiohttp_session() -> None:
        async with session.post(url + "/generate", data=body, headers=headers) as response:
            assert json.loads(await response.read())["generated_text"]

    async def hf_client() -> None:
        assert await hf.text_generation(PROMPT, max_new_tokens=8)

    clients = {"http1 pool (the gateway)": lean, "aiohttp ClientSession": aiohttp_session,
               "AsyncInferenceClient.text_generation": hf_client}
    cpu: dict[str, list[float]] = {name: [] for name in clients}
    wall: dict[str, list[float]] = {name: [] for name in clients}
    try:
        await wait_up(session, url, process)
        for _ in range(rounds):
            for name, call in clients.items():
                for _ in range(50):  # warm up
                    await call()
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                for _ in range(calls):
                    await call()
                cpu[name].append((time.process_time() - cpu_start) / calls * 1e6)
                wall[name].append((time.perf_counter() - wall_start) / calls * 1e6)
    finally:
        await pool.close()
        await session.close()
        await hf.close()
    return {name: {"cpu_us": statistics.median(cpu[name]), "wall_us": statistics.median(wall[name]),
                   "cpu_us_all": cpu[name]} for name in clients}


def report(result: dict, args: argparse.Namespace, load: float) -> str:
    lean = result["http1 pool (the gateway)"]["cpu_us"]
    lines = [
        SECTION,
        "",
        f"Command: `.venv/bin/python benchmarks/upstream_clients.py --calls {args.calls} "
        f"--rounds {args.rounds} --record`",
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
        f"{platform.python_version()}), load average {load:.1f} at the start; one TGI-shaped "
        "`/generate` call at a time to a minimal upstream on loopback, all clients in the same "
        "run (medians of the rounds).",
        "",
        "| client | CPU per call | wall per call | CPU vs the pool |",
        "|---|---|---|---|",
    ]
    for name, r in result.items():
        lines.append(f"| {name} | {r['cpu_us']:.0f} us | {r['wall_us']:.0f} us | "
                     f"{r['cpu_us'] / lean:.2f}x |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="per client and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write benchmarks/RESULTS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    port = free_port()
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=run_upstream, args=(port,), daemon=True)
    process.start()
    try:
        from multitask_gateway.serve import new_loop

        with asyncio.Runner(loop_factory=new_loop) as runner:
            result = runner.run(measure(f"http://127.0.0.1:{port}", args.calls, args.rounds,
                                        process))
    finally:
        process.terminate()
        process.join(10)
    section = report(result, args, load)
    print(section)
    if args.record:
        record_section(SECTION, section)


if __name__ == "__main__":
    main()
