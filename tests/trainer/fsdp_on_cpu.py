"""Test-only launcher: the trainer with accelerate's FSDP switched on for CPU processes.

    torchrun --standalone --nproc-per-node 2 tests/trainer/fsdp_on_cpu.py \\
        train --workspace W --stage stage2 --fsdp

accelerate (1.15) selects FSDP only on accelerators (multitask_trainer/distributed.py says
where); torch's FSDP2 itself runs on CPU over gloo. This sets accelerate's state as it is on
GPUs, so that the CPU tests take the trainer's FSDP path: equal micro-batch counts on all ranks,
sharded checkpoints written and read through torch.distributed.checkpoint, the final weights
gathered to rank 0. Nothing in the trainer or the image uses it.
"""

from __future__ import annotations

import sys

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin


class CpuFsdpAccelerator(accelerate.Accelerator):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from multitask_trainer.distributed import fsdp_requested

        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_requested():
            # Both states: AcceleratorState re-reads PartialState's on some calls.
            PartialState().distributed_type = DistributedType.FSDP
            self.state.distributed_type = DistributedType.FSDP
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* env


accelerate.Accelerator = CpuFsdpAccelerator  # train.py imports it from accelerate when it runs

if __name__ == "__main__":
    from multitask_trainer.__main__ import main

    sys.exit(main())
