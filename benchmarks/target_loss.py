"""What the LM head at target positions only saves in a training step (train.target_loss)
against transformers' loss over every position, on a real model, in the same run.

    .venv/bin/python benchmarks/target_loss.py [--model DIR] [--steps 8] [--record]

One step: forward and backward of LoRA (r 8, all linear layers) on SmolLM2-135M-Instruct over
one packed row of 4 examples of 90 tokens, each with a 2-token target (a classification batch
of the demo's shape). The two losses and their gradients are equal (tests/trainer/
test_target_loss.py). `--record` writes the `## Training: LM head at target positions`
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_speed import model_dir  # noqa: E402 - a sibling script
from gateway_overhead import record_section  # noqa: E402

SECTION = "## Training: LM head at target positions"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    import torch
    from multitask_trainer.train import target_loss
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir(args.model), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    ids = torch.randint(10, model.config.vocab_size, (1, 360))
    labels = torch.full_like(ids, -100)
    for e in range(4):
        labels[0, e * 90 + 87:e * 90 + 89] = ids[0, e * 90 + 87:e * 90 + 89]
    batch = {"input_ids": ids, "labels": labels,
             "position_ids": torch.cat([torch.arange(90)] * 4).unsqueeze(0)}
    items = float((labels != -100).sum())
    ways = {"transformers' loss, LM head at all 360 positions": lambda: model(
                **batch, use_cache=False, num_items_in_batch=items).loss,
            "target_loss, LM head at the 8 target positions": lambda: target_loss(
                model, batch, items)}
    seconds = dict.fromkeys(ways, 0.0)
    load = os.getloadavg()[0]
    for i in range(args.steps + 2):  # two warm-up rounds, then alternating
        for name, loss in ways.items():
            model.zero_grad()
            start = time.perf_counter()
            loss().backward()
            if i >= 2:
                seconds[name] += time.perf_counter() - start
    (slow, t_slow), (fast, t_fast) = seconds.items()
    lines = [SECTION, "",
             f"Command: `.venv/bin/python benchmarks/target_loss.py --steps {args.steps}"
             f"{' --record' if args.record else ''}`",
             f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
             f"{platform.python_version()}, torch {torch.__version__}), load average "
             f"{load:.1f} at the start. SmolLM2-135M-Instruct, LoRA r 8, one packed row of 4 x "
             "90 tokens with 2-token targets; mean of the steps after two warm-up rounds.", "",
             "| loss | seconds per step | ratio |", "|---|---|---|",
             f"| {slow} | {t_slow / args.steps:.2f} | 1.00x |",
             f"| {fast} | {t_fast / args.steps:.2f} | {t_slow / t_fast:.2f}x |", "",
             "Not yet measured here (issue \"real model\", part 5): a plain transformers.Trainer "
             "and DataCollatorWithFlattening on the same batches."]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.record:
        record_section(SECTION, section)


if __name__ == "__main__":
    main()
