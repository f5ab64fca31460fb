"""How the operator scales on the emulated API server: first-Job latency, reconcile throughput
with many MultiTaskModels, and memory.

    .venv/bin/python benchmarks/operator_scale.py                 # print the figures
    .venv/bin/python benchmarks/operator_scale.py --models 100 --record   # and update RESULTS.md

1. apply -> first Job: one MultiTaskModel is created; the time until its prepare Job exists.
2. throughput: N more are created at once; the time until every one has its prepare Job and a
   Preparing status, i.e. N full reconciles (observe, decide, create PVC, ConfigMap, Job, patch
   status) through kopf; and the pure reconcile core alone on a Ready model, calls per second.
3. memory: peak RSS of this process (operator, emulator and benchmark share it: an upper bound)
   and the Python heap the operator thread allocated, from tracemalloc.
No Job runs (no kubelet): this measures the operator, not training.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.operator import factories  # noqa: E402
from tests.operator.harness import NAMESPACE, Cluster  # noqa: E402

SECTION = "## Operator scale"


class _Env:
    def setenv(self, key: str, value: str) -> None:
        os.environ[key] = value


def spec() -> dict:
    return factories.spec(training={"workspace": {"claimName": "shared"}})


async def _wait(cluster: Cluster, check, timeout: float) -> float:
    started = time.perf_counter()
    await cluster.wait(check, timeout, "the benchmark condition")
    return time.perf_counter() - started


async def measure(models: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        async with Cluster.start(Path(tmp), _Env()) as cluster:
            cluster._kubelet_task.cancel()  # nothing runs: only the operator is measured
            await cluster.start_operator()
            await asyncio.sleep(1.0)  # kopf's discovery and first watch
            started = time.perf_counter()
            await cluster.apply("first", spec())

            async def first_job():
                return await cluster.client.list("batch/v1", "Job", NAMESPACE)
            await cluster.wait(first_job, 60, "the first Job")
            first = time.perf_counter() - started

            started = time.perf_counter()
            for i in range(models):
                await cluster.apply(f"m{i:03d}", spec())

            async def all_preparing():
                items = await cluster.client.list("multitask.ai/v1alpha1", "MultiTaskModel",
                                                  NAMESPACE)
                ready = [m for m in items if (m.get("status") or {}).get("phase") == "Preparing"]
                return len(ready) >= models + 1
            await cluster.wait(all_preparing, 600, "every model to be Preparing")
            elapsed = time.perf_counter() - started
            jobs = len(await cluster.client.list("batch/v1", "Job", NAMESPACE))
            await cluster.stop_operator()
    return {"firstJobSeconds": first, "models": models, "allPreparingSeconds": elapsed,
            "reconcilesPerSecond": models / elapsed, "jobs": jobs}


def core_throughput(seconds: float = 2.0) -> float:
    from multitask_operator.api.spec import MultiTaskModelSpec
    from multitask_operator.config import OperatorConfig
    from multitask_operator.reconcile import reconcile, training_revision

    rev = training_revision(MultiTaskModelSpec.model_validate(factories.spec()))
    obs = factories.observed(
        jobs=factories.finished_jobs(rev),
        deployments={n: factories.deployment(n, rev) for n in ("demo-inference",
                                                               "demo-gateway")})
    config, calls, started = OperatorConfig(), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        reconcile(obs, config)
        calls += 1
    return calls / (time.perf_counter() - started)


def record(result: dict, command: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    body = (
        f"{SECTION}\n\n"
        f"Command: `{command}`\n"
        f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
        f"{platform.python_version()}); operator (kopf in its own thread), emulated API server "
        "and benchmark in one process; no Job runs.\n\n"
        "| measure | value |\n|---|---:|\n"
        f"| apply -> first Job | {result['firstJobSeconds']:.2f} s |\n"
        f"| {result['models']} models applied at once -> all Preparing | "
        f"{result['allPreparingSeconds']:.1f} s ({result['reconcilesPerSecond']:.1f} models/s) |\n"
        f"| pure reconcile core, Ready model | {result['coreCallsPerSecond']:.0f} calls/s |\n"
        f"| peak RSS of the process | {result['peakRssMiB']:.0f} MiB |\n"
    )
    if result["heapPeakMiB"] is not None:
        body += f"| Python heap peak (tracemalloc) | {result['heapPeakMiB']:.1f} MiB |\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[end + 1:] if end != -1 else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--record", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--heap", action="store_true",
                        help="also trace the Python heap (tracemalloc slows Python code several "
                        "times over: the timings are then lower bounds)")
    args = parser.parse_args()
    if args.heap:
        tracemalloc.start()
    result = asyncio.run(measure(args.models))
    result["heapPeakMiB"] = tracemalloc.get_traced_memory()[1] / 2**20 if args.heap else None
    tracemalloc.stop()
    result["coreCallsPerSecond"] = core_throughput()
    result["peakRssMiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result, indent=2))
    if args.record:
        record(result, "python benchmarks/operator_scale.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
