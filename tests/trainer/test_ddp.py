"""The trainer under several processes (CPU, gloo) ends with the weights of one process.

Every rank computes the whole step's schedule and takes its share of micro-batches; the loss
is normalised by the step's target tokens over all ranks, so averaging gradients over ranks
gives the single-process gradient. Equal up to float summation order, for 2 processes on one
"node" (torchrun --standalone), 2 "nodes" of 1 process (two torchrun launchers meeting at a
master address, as on two pods of a JobSet), and 3 processes under FSDP (forced on for CPU by
tests/trainer/fsdp_on_cpu.py; accelerate itself enables FSDP on accelerators only)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from multitask_operator.api.results import StepSummary, parse_progress_line
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow
STEPS = 8
TIMEOUT = 300  # a hung collective fails the test instead of the suite
FSDP_LAUNCHER = str(Path(__file__).with_name("fsdp_on_cpu.py"))


def _env(termination_log=os.devnull, gpu: bool = False) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTM_TERMINATION_LOG": str(termination_log)}
    if not gpu:
        # CPU processes over gloo, on any machine: on a one-GPU machine, several processes
        # would otherwise all pick its one GPU, which NCCL refuses (test_gpu.py runs there).
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _train_args(ws) -> list[str]:
    return ["train", "--workspace", str(ws), "--stage", "stage2"]


def _run(command: list[str], termination_log=os.devnull,
         gpu: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=_env(termination_log, gpu), capture_output=True,
                          text=True, timeout=TIMEOUT)


def _torchrun(*options: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *options]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def spec(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    path = write_spec(folder, {"sentiment": 60, "intent": 60}, model=str(tiny_model_dir),
                      method="full", learningRate=3e-3, batchSize=8, maxSteps=STEPS,
                      checkpointEvery=4)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["recipe"]["highResourceThreshold"] = 10_000  # stage2 only
    path.write_text(yaml.safe_dump(doc))
    return path


def _prepared(spec: Path, name: str) -> Workspace:
    ws = spec.parent / name
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    return Workspace(ws)


@pytest.fixture(scope="module")
def single(spec) -> Workspace:
    ws = _prepared(spec, "single")
    done = _run([sys.executable, "-m", "multitask_trainer", *_train_args(ws.root)])
    assert done.returncode == 0, done.stderr
    return ws


def _weights(ws: Workspace):
    from safetensors.torch import load_file

    return load_file(ws.final_dir("stage2") / "model.safetensors")


def _assert_same_weights(expected: Workspace, actual: Workspace) -> float:
    """Equal within float tolerance; returns the largest absolute difference."""
    import torch

    a, b = _weights(expected), _weights(actual)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def _logged_steps(ws: Workspace) -> list[int]:
    lines = ws.progress_file("stage2").read_text().splitlines()
    return [parse_progress_line(line).step for line in lines]


def _summary(path: Path) -> StepSummary:
    return StepSummary.model_validate(json.loads(path.read_text(encoding="utf-8")))


def test_two_processes_train_the_same_weights_as_one(spec, single, tmp_path):
    ws = _prepared(spec, "parallel")
    log = tmp_path / "termination-log"
    done = _run(_torchrun("--standalone", "--nproc-per-node", "2",
                          "-m", "multitask_trainer", *_train_args(ws.root)), log)
    assert done.returncode == 0, done.stderr
    ckpt = ws.latest_checkpoint("stage2")[1]
    assert (ckpt / "random_states_1.pkl").is_file()  # really two processes
    print(f"2 processes vs 1, {STEPS} steps: max |dw| = {_assert_same_weights(single, ws):.3g}")
    assert _logged_steps(ws) == [1, 4, 8]  # rank 0 logs, once
    summary = _summary(log)  # both processes' pod file: local rank 0 wrote it
    last = parse_progress_line(ws.progress_file("stage2").read_text().splitlines()[-1])
    assert summary.ok and summary.details["lastLoss"] == pytest.approx(last.loss, abs=1e-6)


def test_two_nodes_of_one_process_train_the_same_weights_as_one(spec, single, tmp_path):
    """Two launchers meet at 127.0.0.1 as a JobSet's pods meet at the leader's address."""
    ws = _prepared(spec, "two-nodes")
    port = str(_free_port())
    logs = [tmp_path / f"node-{rank}.log" for rank in range(2)]
    nodes = [subprocess.Popen(
        _torchrun("--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node", "1",
                  "--master-addr", "127.0.0.1", "--master-port", port,
                  "-m", "multitask_trainer", *_train_args(ws.root)),
        env=_env(logs[rank]), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for rank in range(2)]
    try:
        outputs = [node.communicate(timeout=TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr
    assert "progress" in outputs[0][0] and "progress" not in outputs[1][0]  # rank 0 logs
    print(f"2 nodes vs 1 process: max |dw| = {_assert_same_weights(single, ws):.3g}")
    assert _logged_steps(ws) == [1, 4, 8]
    ckpt = ws.latest_checkpoint("stage2")[1]
    assert sorted(p.name for p in ckpt.glob("random_states_*")) == [
        "random_states_0.pkl", "random_states_1.pkl"]
    # Every pod's termination message holds the same, global result.
    summaries = [_summary(log) for log in logs]
    assert summaries[0].ok and summaries[0] == summaries[1]


def test_fsdp_is_refused_where_accelerate_cannot_shard(spec, tmp_path):
    ws = _prepared(spec, "fsdp-refused")
    log = tmp_path / "termination-log"
    done = _run(_torchrun("--standalone", "--nproc-per-node", "2",
                          "-m", "multitask_trainer", *_train_args(ws.root), "--fsdp"), log)
    assert done.returncode != 0
    summary = _summary(log)
    assert not summary.ok and "FSDP was requested" in summary.message
    assert "on cpu" in summary.message
    assert not ws.checkpoints_dir("stage2").exists()


@pytest.fixture(scope="module")
def fsdp(spec) -> tuple[Workspace, list[str]]:
    ws = _prepared(spec, "fsdp")
    # 3 ranks get 3, 3 and 2 of a step's 8 examples; micro-batches of one example (50 tokens)
    # give rank 2 one pass fewer, which it must make up with an empty one (step_shards), or
    # the collectives of FSDP's forward and backward would not pair up and the run would hang.
    command = _torchrun("--standalone", "--nproc-per-node", "3", FSDP_LAUNCHER,
                        *_train_args(ws.root), "--fsdp", "--micro-batch-tokens", "50")
    done = _run(command)
    assert done.returncode == 0, done.stderr
    return ws, command


def test_fsdp_trains_the_same_weights_as_one_process(fsdp, single):
    ws, _ = fsdp
    # Sharded: the model and optimizer through torch.distributed.checkpoint, one file a rank.
    ckpt = ws.latest_checkpoint("stage2")[1]
    assert len(list((ckpt / "pytorch_model_fsdp_0").glob("*.distcp"))) == 3
    assert not (ckpt / "model.safetensors").exists()
    print(f"FSDP 3 processes vs 1: max |dw| = {_assert_same_weights(single, ws):.3g}")


def test_fsdp_resumes_from_its_sharded_checkpoint(fsdp, tmp_path):
    import torch

    trained, command = fsdp
    ws = Workspace(tmp_path / "fsdp")
    shutil.copytree(trained.root, ws.root)
    command = [str(ws.root) if arg == str(trained.root) else arg for arg in command]
    # Back to the state after step 4: the last checkpoint and the final model are gone.
    shutil.rmtree(ws.final_dir("stage2"))
    shutil.rmtree(ws.latest_checkpoint("stage2")[1])
    resumed = _run(command)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after step 4" in resumed.stderr
    assert _logged_steps(ws) == [1, 4, 5, 8]  # steps after 4 logged again, once
    first = _weights(trained)
    for key, value in _weights(ws).items():
        torch.testing.assert_close(value, first[key], rtol=1e-5, atol=1e-6, msg=key)
