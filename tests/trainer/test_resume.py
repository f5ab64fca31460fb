"""Kill a LoRA training run mid-stage, resume it, and get the uninterrupted run's weights.

LoRA dropout makes the result depend on the RNG state, and the schedule on the sampler
position, so equal weights show that model, optimizer, scheduler, sampler and RNG all resume.
The run is killed with SIGKILL as soon as it logs step 10, wherever it is at that moment
(possibly in the middle of writing a checkpoint)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from multitask_operator.api.results import parse_progress_line
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow
KILL_AT = 10


def _train_command(ws) -> list[str]:
    return [sys.executable, "-m", "multitask_trainer", "train", "--workspace", str(ws),
            "--stage", "stage2", "--log-every", "1"]


def _env():
    # One thread: fast for a tiny model, and the same arithmetic in every process.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MTM_TERMINATION_LOG": os.devnull}


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    spec = write_spec(folder, {"sentiment": 120, "intent": 80}, model=str(tiny_model_dir),
                      learningRate=1e-2, batchSize=8, maxSteps=20, checkpointEvery=4)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["recipe"]["highResourceThreshold"] = 10_000  # stage2 only
    spec.write_text(yaml.safe_dump(doc))
    straight, killed = folder / "straight", folder / "killed"
    for ws in (straight, killed):
        assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0

    subprocess.run(_train_command(straight), env=_env(), check=True, capture_output=True)

    proc = subprocess.Popen(_train_command(killed), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        event = parse_progress_line(line)
        if event is not None and event.step >= KILL_AT:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted = Workspace(killed)
    state_after_kill = (interrupted.stage_done("stage2"), interrupted.latest_checkpoint("stage2"))

    resumed = subprocess.run(_train_command(killed), env=_env(), check=True,
                             capture_output=True, text=True)
    return Workspace(straight), interrupted, state_after_kill, resumed.stderr


def _adapter(ws: Workspace):
    from safetensors.torch import load_file

    return load_file(ws.final_dir("stage2") / "adapter_model.safetensors")


def test_killed_run_left_a_checkpoint_and_no_final_model(runs):
    _, _, (done, latest), _ = runs
    assert not done
    assert latest is not None and 4 <= latest[0] <= KILL_AT


def test_resumed_run_ends_with_the_uninterrupted_weights(runs):
    import torch

    straight, interrupted, (_, latest), stderr = runs
    assert f"resuming after step {latest[0]}" in stderr
    assert not list(interrupted.checkpoints_dir("stage2").glob("*.partial"))
    logged = [parse_progress_line(line).step
              for line in interrupted.progress_file("stage2").read_text().splitlines()]
    assert logged == list(range(1, 21))  # steps logged again after the resume appear once
    a, b = _adapter(straight), _adapter(interrupted)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_only_the_last_checkpoints_are_kept_and_they_are_small(runs):
    straight, _, _, _ = runs
    kept = straight.checkpoints("stage2")
    assert [step for step, _ in kept] == [16, 20]
    weights = kept[-1][1] / "model.safetensors"
    adapter = straight.final_dir("stage2") / "adapter_model.safetensors"
    # Trainable weights only: adapter-sized, not a copy of the base model.
    assert weights.stat().st_size < 2 * adapter.stat().st_size


def test_lora_export_merges_the_adapter(runs, one_thread):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    straight, _, _, _ = runs
    assert main(["export", "--workspace", str(straight.root)]) == 0
    merged = AutoModelForCausalLM.from_pretrained(straight.export_dir).eval()
    spec = json.loads(straight.spec_file.read_text())
    base = AutoModelForCausalLM.from_pretrained(spec["baseModel"]["path"])
    adapted = PeftModel.from_pretrained(base, straight.final_dir("stage2")).eval()
    ids = torch.tensor([[5, 40, 77, 120, 9]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, rtol=1e-4, atol=1e-4)
    assert merged.generate(ids, max_new_tokens=3, do_sample=False).shape[1] > ids.shape[1]
    assert (straight.export_dir / "prompt_format.json").is_file()
