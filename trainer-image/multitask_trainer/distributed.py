"""The trainer under several processes: when the model is sharded with FSDP.

Data parallel (DDP) is the default: every process holds the whole model. FSDP (fully sharded
data parallel) splits parameters, gradients and optimizer state over the processes, for models
that do not fit one GPU. It is on when

* the launcher configured it: `accelerate launch --use_fsdp ...`, or an accelerate config file
  with `distributed_type: FSDP`, exports ACCELERATE_USE_FSDP=true and FSDP_* settings, which
  accelerate (and transformers' model loading) read;
* `train --fsdp` is given, e.g. under the plain `torchrun` that the operator's multi-node
  runtimes launch: the trainer exports the same variables before accelerate starts, with these
  defaults for any the launcher did not set:
    FSDP_VERSION=2                            per-parameter sharding (DTensor), accelerate's
                                              recommended version
    FSDP_AUTO_WRAP_POLICY=TRANSFORMER_BASED_WRAP  one shard unit per decoder layer (the model's
                                              _no_split_modules)
    FSDP_STATE_DICT_TYPE=SHARDED_STATE_DICT   checkpoints written as each rank's shard through
                                              torch.distributed.checkpoint, into the shared
                                              checkpoint directory; the final model is gathered
                                              to rank 0 and saved whole
  Other accelerate FSDP settings pass through, e.g. FSDP_CPU_RAM_EFFICIENT_LOADING=true (only
  rank 0 reads the weights into CPU memory; for nodes without RAM for a copy per GPU),
  FSDP_ACTIVATION_CHECKPOINTING=true, FSDP_OFFLOAD_PARAMS=true.

accelerate (1.15) turns FSDP on only on accelerators (CUDA, XPU, NPU, HPU, ...): on CPU it
quietly builds a DDP model instead (AcceleratorState selects DistributedType.FSDP only in its
multi-GPU-class branch). Rather than train unsharded when sharding was asked for, the trainer
refuses that with several processes; with one process there is nothing to shard.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from .errors import TrainerError

USE_FSDP = "ACCELERATE_USE_FSDP"
FSDP_DEFAULTS = {
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT",
}


def request_fsdp(environ: MutableMapping[str, str] = os.environ) -> None:
    """What `--fsdp` does: turn FSDP on for accelerate, keeping the launcher's FSDP_* choices."""
    environ[USE_FSDP] = "true"
    for name, value in FSDP_DEFAULTS.items():
        environ.setdefault(name, value)


def fsdp_requested(environ: MutableMapping[str, str] = os.environ) -> bool:
    # The same test as accelerate's (state.py): the literal "true", in any case.
    return environ.get(USE_FSDP, "false").lower() == "true"


def uses_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def check_fsdp_active(accelerator, environ: MutableMapping[str, str] = os.environ) -> None:
    """Refuse a multi-process run that asked for FSDP but that accelerate did not shard."""
    if fsdp_requested(environ) and accelerator.num_processes > 1 and not uses_fsdp(accelerator):
        raise TrainerError(
            f"FSDP was requested (--fsdp or {USE_FSDP}=true) but accelerate runs FSDP only on "
            f"GPUs and other accelerators, and these {accelerator.num_processes} processes run "
            f"on {accelerator.device.type}; leave FSDP off to train with DDP, or run on GPUs")
