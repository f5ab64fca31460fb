"""What the LM head at target positions only saves in a training step (train.target_loss)
against transformers' loss over every position, on a real model, in the same run.

    .venv/bin/python benchmarks/target_loss.py [--model DIR] [--steps 8] [--record]

One step: forward, backward and an AdamW update of LoRA (r 8, all linear layers) on
SmolLM2-135M-Instruct over 4 examples of 90 tokens, each with a 2-token target (a
classification batch of the demo's shape), packed in one row. The two losses and their
gradients are equal (tests/trainer/test_target_loss.py). For reference, in the same run, a
plain `transformers.Trainer` on the same examples, with its default collator (a padded batch)
and with `DataCollatorWithFlattening` (one packed row, like ours), timed per step by a
callback. `--record` writes the `## Training: LM head at target positions`
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


class Timer:
    """A transformers TrainerCallback (duck-typed) that times each optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start = 0.0

    def __getattr__(self, name: str):  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    def on_step_begin(self, *args, **kwargs) -> None:
        self.start = time.perf_counter()

    def on_step_end(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter() - self.start)


def hf_trainer(model_path: str | None, ids, labels, steps: int) -> dict[str, float]:
    """Seconds per step of a plain transformers.Trainer on the same 4 examples per step:
    default collator (a padded 4 x 90 batch) and DataCollatorWithFlattening (one packed row)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorWithFlattening,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    examples = [{"input_ids": ids[0, e * 90:(e + 1) * 90].tolist(),
                 "labels": labels[0, e * 90:(e + 1) * 90].tolist()} for e in range(4)]
    out = {}
    for name, collator in (("default collator (padded 4 x 90)", default_data_collator),
                           ("DataCollatorWithFlattening (packed)", DataCollatorWithFlattening())):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_dir(model_path), dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16,
                                                 target_modules="all-linear"))
        timer = Timer()

        arguments = TrainingArguments(
            output_dir=str(Path("/tmp") / "mtm-target-loss-bench"), per_device_train_batch_size=4,
            max_steps=steps + 2, learning_rate=1e-4, report_to=[], save_strategy="no",
            logging_strategy="no", use_cpu=True, dataloader_num_workers=0,
            remove_unused_columns=False)
        Trainer(model=model, args=arguments, train_dataset=examples * (steps + 2),
                data_collator=collator, callbacks=[timer]).train()
        out[name] = sum(timer.times[2:]) / max(len(timer.times) - 2, 1)
    return out


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
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for i in range(args.steps + 2):  # two warm-up rounds, then alternating
        for name, loss in ways.items():
            optimizer.zero_grad()
            start = time.perf_counter()
            loss().backward()
            optimizer.step()
            if i >= 2:
                seconds[name] += time.perf_counter() - start
    (slow, t_slow), (fast, t_fast) = seconds.items()
    per_step = t_slow / args.steps
    trainer_rows = [f"| transformers.Trainer, {name} | {t:.2f} | {per_step / t:.2f}x |"
                    for name, t in hf_trainer(args.model, ids, labels, args.steps).items()]
    lines = [SECTION, "",
             f"Command: `.venv/bin/python benchmarks/target_loss.py --steps {args.steps}"
             f"{' --record' if args.record else ''}`",
             f"Machine: {os.cpu_count()} CPU cores ({platform.machine()}, Python "
             f"{platform.python_version()}, torch {torch.__version__}), load average "
             f"{load:.1f} at the start. SmolLM2-135M-Instruct, LoRA r 8, one packed row of 4 x "
             "90 tokens with 2-token targets; mean of the steps after two warm-up rounds.", "",
             "| step | seconds per step | speed vs the first row |", "|---|---|---|",
             f"| this trainer, {slow} | {t_slow / args.steps:.2f} | 1.00x |",
             f"| this trainer, {fast} | {t_fast / args.steps:.2f} | {t_slow / t_fast:.2f}x |",
             *trainer_rows, "",
             "Ratios divide the first row's seconds per step by the row's. The Trainer rows "
             "include its own per-step work (scheduler, gradient clipping, logging checks)."]
    section = "\n".join(lines) + "\n"
    print(section)
    if args.record:
        record_section(SECTION, section)


if __name__ == "__main__":
    main()
