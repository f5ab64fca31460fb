"""Packed vs padded steps of the 1.1B Llama (LoRA, bf16 autocast) on a GPU, through the trainer's
own micro-batch layout (sampling.step_shards, micro_batch_rows) and collate; no data loading,
no checkpoints.

    python benchmarks/packing_passes.py [--max-seq-length 1024] [--compile]   # needs CUDA

Twelve steps of 16 examples (input lengths log-normal, as in trainer_throughput.py), timed as
padded, packed, padded, packed in one process: the first pass over a layout also shows the
GPU's warm-up (kernel choice per new shape, allocator growth). Per layout: ms per step, host
ms (the time the Python thread spends issuing the step; ~= ms per step when the CPU, not the
GPU, is the bound), tokens computed per step (padding included), forward/backward passes per
step, and the step's real tokens. `--compile` wraps the model in torch.compile(dynamic=True).
Results: benchmarks/RESULTS.md (## Trainer throughput, GPU).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

# The same 1.1B Llama as lora_pass_anatomy.py (run from benchmarks/, as both are).
from lora_pass_anatomy import cfg as LLAMA_1B
from multitask_trainer.encoding import TaskTokens
from multitask_trainer.sampling import computed_tokens, micro_batch_rows, step_shards
from multitask_trainer.train import collate
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM

BATCH, STEPS, WARM = 16, 12, 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-seq-length", type=int, default=1024)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    seq = args.max_seq_length
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(np.log(seq / 6), 0.9, 4000), 8, seq).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data = [TaskTokens(tokens=rng.integers(5, 32000, int(lengths.sum())), starts=starts,
                       lengths=lengths, prompt_lengths=lengths // 2)]
    with torch.device("cuda"):
        base = LlamaForCausalLM(LLAMA_1B).to(torch.bfloat16)
    # As the trainer's defaults: LoRA r 16, alpha 32, dropout 0.05 on every linear layer.
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05,
                                            target_modules="all-linear", task_type="CAUSAL_LM"))
    forward = torch.compile(model, dynamic=True) if args.compile else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                                  fused=True)
    steps = [rng.choice(len(lengths), BATCH, replace=False) for _ in range(STEPS)]
    # The trainer's GPU defaults: cap 16 x maxSeqLength, overhead 8 x maxSeqLength.
    budget, overhead = min(BATCH, 16) * seq, 8 * seq

    def run(packed: bool) -> None:
        wall = host = 0.0
        computed = passes = 0
        for k, examples in enumerate(steps):
            step_lengths = lengths[examples]
            groups = step_shards(step_lengths, budget, 1, overhead, packed=packed)[0]
            torch.cuda.synchronize()
            began = time.perf_counter()
            issued = 0.0
            for group in groups:
                rows = micro_batch_rows(step_lengths, group, packed)
                computed += computed_tokens(step_lengths, rows)
                passes += 1
                h = time.perf_counter()
                batch = collate(data, np.zeros(BATCH, np.int64), examples, rows, 0,
                                packed=any(len(row) > 1 for row in rows))
                batch = {name: t.to("cuda", non_blocking=True) for name, t in batch.items()}
                with torch.autocast("cuda", torch.bfloat16):
                    out = forward(**batch, use_cache=False,
                                  num_items_in_batch=float(step_lengths.sum()))
                out.loss.backward()
                issued += time.perf_counter() - h
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            if k >= WARM:
                wall += time.perf_counter() - began
                host += issued
        timed = STEPS - WARM
        real = lengths[np.concatenate(steps)].sum() / STEPS
        label = ("packed" if packed else "padded") + (" compiled" if args.compile else "")
        print(f"{label:18s} {wall / timed * 1000:7.1f} ms/step (host {host / timed * 1000:6.1f})"
              f"  computed {computed / STEPS:7.0f} tokens/step  passes/step {passes / STEPS:.2f}"
              f"  real tokens/step {real:.0f}", flush=True)

    for packed in (False, True, False, True):
        run(packed)


if __name__ == "__main__":
    main()
