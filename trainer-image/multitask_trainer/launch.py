"""`torchrun`, passing the trainer's exit code on: what the operator's multi-node pods run.

    python -m multitask_trainer.launch --nnodes=2 --nproc-per-node=8 --node-rank=0 \
        --master-addr=HOST --master-port=29500 -m multitask_trainer train --workspace W --stage S

Every argument is torchrun's (`torch.distributed.run`, which this calls in-process). The one
difference is the exit code. torchrun exits 1 whatever its workers exited with, so the trainer's
bad-input code 2 (a `TrainerError`, see `__main__.main`) would never reach the pod, and a Job's
or JobSet's podFailurePolicy, which fails at once on exit code 2 instead of retrying, would
never fire. Here
the pod exits with the code of the first worker that failed (torchrun's own choice of "root
cause"), 128 + N for a worker killed by signal N, as a shell would report it.
"""

from __future__ import annotations

import sys

FAILED = 1  # torchrun's own failure (bad arguments, rendezvous timeout): what torchrun exits with


def exit_code(error: BaseException) -> int:
    """The pod's exit code for what torchrun raised."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if isinstance(error, ChildFailedError):
        _, failure = error.get_first_failure()
        code = failure.exitcode
        if code > 0:
            return code
        if code < 0:  # killed by a signal: ProcessFailure keeps it as -N
            return 128 - code
    return FAILED


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.run import main as torchrun

    try:
        torchrun(sys.argv[1:] if argv is None else argv)
    except SystemExit as stop:  # argparse errors and --help
        return stop.code if isinstance(stop.code, int) else FAILED
    except Exception as error:  # noqa: BLE001 - torchrun already logged it; only the code is left
        return exit_code(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
