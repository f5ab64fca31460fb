"""Data-parallel training (DDP over 2 CPU processes, gloo) equals single-process training.

Every rank computes the whole step's schedule and takes its share of micro-batches; the loss
is normalised by the step's target tokens over all ranks, so averaging gradients over ranks
gives the single-process gradient. Equal up to float summation order."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow


def _train(ws, processes: int) -> None:
    # --standalone: a local rendezvous on a free port, so parallel test runs do not collide.
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTM_TERMINATION_LOG": os.devnull}
    subprocess.run([*launcher, "-m", "multitask_trainer", "train", "--workspace", str(ws),
                    "--stage", "stage2"], env=env, check=True, capture_output=True,
                   timeout=300)  # a hung collective fails the test instead of the suite


def test_two_processes_train_the_same_weights_as_one(tiny_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    spec = write_spec(tmp_path, {"sentiment": 60, "intent": 60}, model=str(tiny_model_dir),
                      method="full", learningRate=3e-3, batchSize=8, maxSteps=8)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["recipe"]["highResourceThreshold"] = 10_000
    spec.write_text(yaml.safe_dump(doc))
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    for ws in (single, parallel):
        assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    _train(single, 1)
    _train(parallel, 2)
    ckpt = Workspace(parallel).latest_checkpoint("stage2")[1]
    assert (ckpt / "random_states_1.pkl").is_file()  # really two processes
    a = load_file(Workspace(single).final_dir("stage2") / "model.safetensors")
    b = load_file(Workspace(parallel).final_dir("stage2") / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
