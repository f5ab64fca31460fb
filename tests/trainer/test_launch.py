"""`python -m multitask_trainer.launch`: torchrun that passes the trainer's exit code on, so that
a multi-node pod's podFailurePolicy sees bad input (exit 2) and fails at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from multitask_trainer.launch import FAILED, exit_code
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure


def _failed(*codes: int) -> ChildFailedError:
    failures = {rank: ProcessFailure(local_rank=rank, pid=100 + rank, exitcode=code,
                                     error_file="/nonexistent")
                for rank, code in enumerate(codes)}
    return ChildFailedError("multitask_trainer", failures)


def test_the_first_failed_worker_decides_the_exit_code():
    assert exit_code(_failed(2)) == 2
    assert exit_code(_failed(2, 1)) == 2  # its peers fail next, on the broken collective
    assert exit_code(_failed(-int(signal.SIGKILL))) == 128 + signal.SIGKILL
    assert exit_code(RuntimeError("rendezvous timed out")) == FAILED


def test_bad_input_under_the_launcher_exits_2(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MTM_TERMINATION_LOG": os.devnull}
    done = subprocess.run(
        [sys.executable, "-m", "multitask_trainer.launch", "--standalone", "--nproc-per-node", "1",
         "-m", "multitask_trainer", "train", "--workspace", str(tmp_path / "missing"),
         "--stage", "stage2", "--cpu"],
        env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "run the prepare step first" in done.stderr
