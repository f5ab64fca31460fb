"""Resumable checkpoints: stages/<stage>/checkpoints/step-NNNNNNNN/.

Each holds what `Accelerator.save_state` writes (trainable weights, optimizer, scheduler and
every process's RNG state; under FSDP the sharded forms) plus `training_state.json` (the step,
the schedule's fingerprint, running counters). Only trainable parameters are stored: for LoRA
that is a few MB instead of a copy of the base model, and loading uses strict=False so that the
frozen base weights, built the same way as in the first run, stay as they are.

Like every workspace output, a checkpoint is written under `.partial` and renamed once all
processes finished writing, so a kill mid-save leaves the previous checkpoint as the latest.

Several processes, possibly on several nodes sharing the workspace volume: global rank 0 alone
creates, renames and deletes checkpoint directories and writes the JSON files; every rank
writes its own RNG state (random_states_<rank>.pkl) and, under FSDP, its shard. On resume,
rank 0 picks the checkpoint and tells the others, so that no node resumes from another step
because its view of a network filesystem's directory lags behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from multitask_operator.workspace import MARKER, PARTIAL_SUFFIX, Workspace, write_json_atomic

STATE_FILE = "training_state.json"


def keep_trainable_weights(models: list, weights: list[dict], output_dir: str) -> None:
    """`Accelerator.register_save_state_pre_hook` hook: drop frozen parameters in place."""
    for model, state in zip(models, weights, strict=False):
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for key in [k for k in state if k not in trainable]:
            del state[key]


def save_checkpoint(accelerator, ws: Workspace, stage: str, step: int, state: dict[str, Any],
                    keep: int) -> Path:
    """Write the checkpoint after optimizer step `step` (1-based count of steps done)."""
    target = ws.checkpoint_dir(stage, step)
    scratch = target.with_name(target.name + PARTIAL_SUFFIX)
    if accelerator.is_main_process:
        if scratch.exists():
            shutil.rmtree(scratch)
        scratch.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(scratch))
    accelerator.wait_for_everyone()  # every rank's RNG file is in before the rename
    if accelerator.is_main_process:
        write_json_atomic(scratch / STATE_FILE, {"step": step, **state})
        write_json_atomic(scratch / MARKER, {"step": step})
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
        for _, old in ws.checkpoints(stage)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def remove_partial(ws: Workspace, stage: str) -> None:
    """Delete checkpoints whose writing was interrupted: they are never resumed from."""
    directory = ws.checkpoints_dir(stage)
    if directory.is_dir():
        for path in directory.glob(f"*{PARTIAL_SUFFIX}"):
            shutil.rmtree(path, ignore_errors=True)


def latest_checkpoint(accelerator, ws: Workspace, stage: str) -> tuple[int, Path] | None:
    """The checkpoint every rank resumes from: global rank 0's choice, sent to all."""
    from accelerate.utils import broadcast_object_list

    chosen = [ws.latest_checkpoint(stage) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(chosen, from_process=0)
    return chosen[0]


def load_checkpoint(accelerator, path: Path) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG state; return training_state.json."""
    accelerator.load_state(str(path), strict=False)
    return json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
