"""Kill a 2-process training run mid-stage, relaunch it, and get the uninterrupted weights.

torchrun --standalone --nproc-per-node 2 (gloo, CPU), LoRA with dropout: equal weights show
that model, optimizer, scheduler, sampler and every rank's RNG state were written once and read
back by all ranks. The launcher and its workers are killed together with SIGKILL, as when a
pod is lost, as soon as rank 0 logs step 6: after the checkpoint of step 4 and possibly in the
middle of writing the next one. (Each by its pid: torchrun starts every worker in a session of
its own, so a signal to the launcher's process group would leave them running.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import yaml
from multitask_operator.api.results import StepSummary, parse_progress_line
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow
TIMEOUT = 300  # a hung collective fails the test instead of the suite
STEPS, KILL_AT = 20, 6  # 20: one epoch of the 160 training examples, 8 a step


def _command(ws: Workspace) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", "2", "-m", "multitask_trainer", "train",
            "--workspace", str(ws.root), "--stage", "stage2", "--log-every", "1"]


def _env(termination_log=os.devnull) -> dict[str, str]:
    # Unbuffered: rank 0's progress lines reach us as they are printed, not at exit.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "MTM_TERMINATION_LOG": str(termination_log)}


@pytest.fixture(scope="module")
def spec(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp-resume")
    path = write_spec(folder, {"sentiment": 120, "intent": 80}, model=str(tiny_model_dir),
                      learningRate=1e-2, batchSize=8, maxSteps=STEPS, checkpointEvery=4)
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["recipe"]["highResourceThreshold"] = 10_000  # stage2 only
    path.write_text(yaml.safe_dump(doc))
    return path


def _prepared(spec, name: str) -> Workspace:
    ws = Workspace(spec.parent / name)
    assert main(["prepare", "--workspace", str(ws.root), "--spec", str(spec)]) == 0
    return ws


def _kill_all(launcher: subprocess.Popen) -> None:
    workers = psutil.Process(launcher.pid).children(recursive=True)
    for process in [*workers, launcher]:
        process.send_signal(signal.SIGKILL)
    # Not the launcher: psutil would reap it and Popen would never see how it ended.
    psutil.wait_procs(workers, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def killed(spec):
    ws = _prepared(spec, "killed")
    launcher = subprocess.Popen(_command(ws), env=_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    try:
        for line in launcher.stdout:
            event = parse_progress_line(line)
            if event is not None and event.step >= KILL_AT:
                _kill_all(launcher)
                break
        launcher.wait(timeout=TIMEOUT)
    finally:
        if launcher.poll() is None:
            _kill_all(launcher)
    assert launcher.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    return ws, ws.stage_done("stage2"), ws.latest_checkpoint("stage2")


def test_the_killed_run_left_a_checkpoint_and_no_final_model(killed):
    _, done, latest = killed
    assert not done
    assert latest is not None and 4 <= latest[0] < STEPS
    assert (latest[1] / "random_states_1.pkl").is_file()


def test_the_relaunched_run_ends_with_the_uninterrupted_weights(killed, spec, tmp_path):
    import torch
    from safetensors.torch import load_file

    ws, _, (resumed_from, _) = killed
    log = tmp_path / "termination-log"
    resumed = subprocess.run(_command(ws), env=_env(log), capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after step {resumed_from}" in resumed.stderr
    print(f"killed after step {KILL_AT} was logged, resumed after step {resumed_from}")
    summary = StepSummary.model_validate(json.loads(log.read_text(encoding="utf-8")))
    assert summary.ok and summary.details["resumedFrom"] == resumed_from
    assert not list(ws.checkpoints_dir("stage2").glob("*.partial"))
    logged = [parse_progress_line(line).step
              for line in ws.progress_file("stage2").read_text().splitlines()]
    assert logged == list(range(1, STEPS + 1))  # no step repeated or skipped in the log

    straight = _prepared(spec, "straight")
    done = subprocess.run(_command(straight), env=_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    a = load_file(straight.final_dir("stage2") / "adapter_model.safetensors")
    b = load_file(ws.final_dir("stage2") / "adapter_model.safetensors")
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
