"""Trainer throughput: multitask_trainer against a plain `transformers.Trainer`, same run.

    .venv/bin/python benchmarks/trainer_throughput.py                      # CPU, tiny model
    .venv/bin/python benchmarks/trainer_throughput.py --model-size smollm2  # CPU, SmolLM2 LoRA
    python benchmarks/trainer_throughput.py --device cuda --model-size 1b --dtype bf16
    ... --record        # append the result table to benchmarks/RESULTS.md (## Trainer throughput)

Both trainers get the same model (a Llama built from a config: `tiny` is 2 layers x 64, `1b` is
TinyLlama-shaped, 22 layers x 2048, about 1.1B parameters; or `smollm2`, the real pretrained
SmolLM2-135M-Instruct from `mtm base-model`, `--model DIR` to give the folder), the same tokenized
examples (input
lengths drawn log-normally, as real task data is: many short, a few long), the same batch size,
learning-rate schedule and clipping, and the same number of optimizer steps. The baseline pads
each random batch to its longest example (DataCollatorForSeq2Seq), which is what most
fine-tuning scripts do; ours packs each step's examples end to end, splitting a step into
several passes only under a memory cap or where a pass saves more than it costs. A third row
runs ours with `--no-packing` (length-bucketed micro-batches, padded), to show what packing
adds. Two more rows: ours with the LM head at every position (the trainer before
train.target_loss, which computes it only where a target token is predicted), and the Trainer
with `DataCollatorWithFlattening` (packed rows, as ours). The targets are one-word labels (1-2
tokens), the classification shape where the head's share is largest.
On a GPU, one untimed training runs first, so that no row carries the GPU's warm-up.

Reported per trainer: non-padding tokens per second (steps 2..N, so that start-up and the first
step's allocations are left out), the share of computed tokens that are not padding, and on
GPU the model FLOPs utilisation: flops/token = 6 x N (full) or 4 x N (LoRA: no weight gradients
for frozen weights) for N non-embedding parameters, plus 12 x layers x hidden x seq for
attention (PaLM, appendix B), over the GPU's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Trainer throughput"
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, from the data sheets
SIZES = {
    "tiny": {"hidden": 64, "layers": 2, "heads": 4, "kv": 4, "ffn": 256, "vocab": 512},
    "1b": {"hidden": 2048, "layers": 22, "heads": 32, "kv": 4, "ffn": 5632, "vocab": 32000},
    # Not built: the pretrained model's shape, for the MFU column.
    "smollm2": {"hidden": 576, "layers": 30, "heads": 9, "kv": 3, "ffn": 1536, "vocab": 49152},
}
WORDS = ("order refund ship deliver account login great awful item today please thanks store "
         "box call again price late early broken fine").split()


def make_model(out: Path, size: str) -> Path:
    import torch
    from multitask_trainer.tiny_model import build_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = SIZES[size]
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=max(shape["vocab"], len(tokenizer)), hidden_size=shape["hidden"],
        intermediate_size=shape["ffn"], num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"], num_key_value_heads=shape["kv"],
        max_position_embeddings=4096, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=size == "tiny",
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_data(folder: Path, examples: int, max_words: int, median_words: float) -> None:
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(mean=np.log(median_words), sigma=0.9, size=examples),
                      3, max_words).astype(int)
    with open(folder / "train.jsonl", "w") as handle:
        for n in lengths:
            text = " ".join(rng.choice(WORDS, size=n))
            label = "positive" if "great" in text else "negative"
            handle.write(json.dumps({"input": text, "output": label}) + "\n")


def write_spec(folder: Path, model: Path, args) -> Path:
    doc = {
        "apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
        "metadata": {"name": "bench"},
        "spec": {
            "baseModel": {"path": str(model)},
            "tasks": [
                {"name": "a", "type": "classification", "instruction": "Classify.",
                 "data": {"train": str(folder / "train.jsonl"), "evalFraction": 0.01}},
                {"name": "b", "type": "classification", "instruction": "Classify this too.",
                 "data": {"train": str(folder / "train.jsonl"), "evalFraction": 0.01}},
            ],
            "recipe": {"highResourceThreshold": 10**9},
            "training": {"method": args.method, "batchSize": args.batch_size,
                         "maxSeqLength": args.max_seq_length, "maxSteps": args.steps,
                         "learningRate": 1e-4, "checkpointEvery": 10**6,
                         "gradientCheckpointing": args.gradient_checkpointing},
        },
    }
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_ours(folder: Path, spec_path: Path, args, packing: bool = True,
             workspace: str | None = None, head_everywhere: bool = False) -> dict:
    from multitask_operator.api import Plan
    from multitask_operator.api.results import parse_progress_line
    from multitask_operator.workspace import Workspace
    from multitask_trainer import train
    from multitask_trainer.prepare import prepare
    from multitask_trainer.specfile import load_spec_file
    from multitask_trainer.train import TrainOptions, train_stage

    spec = load_spec_file(spec_path)
    ws = Workspace(folder / (workspace or ("ws" if packing else "ws-padded")))
    # The trainer before target_loss: this switch is what it falls back on for models whose
    # forward has no mask form of logits_to_keep (no option of the trainer: nobody wants it).
    train.KEEP_MASK_SUPPORTED = not head_everywhere and train._keep_mask_supported()
    prepare(spec, ws)
    plan = Plan.model_validate(json.loads(ws.plan_file.read_text()))
    events = []

    def emit(line: str) -> None:
        events.append((time.monotonic(), parse_progress_line(line)))

    # Progress lines (and so the loss's device-to-host copy) after steps 1 and N-1 only, where
    # the baseline's clock below reads too: a sync every step would hide queueing on a GPU, and
    # step N also writes the final checkpoint, which the baseline (save_strategy no) does not.
    options = TrainOptions(log_every=args.steps - 1, cpu=args.device == "cpu",
                           micro_batch_tokens=args.micro_batch_tokens,
                           micro_batch_overhead=args.micro_batch_overhead, packing=packing)
    train_stage(spec, ws, plan, "stage2", options, emit=emit)
    (t0, first), (t1, last) = events[0], events[-2]
    assert (first.step, last.step) == (1, args.steps - 1), [e.step for _, e in events]
    return {"tokens": last.tokens - first.tokens, "seconds": t1 - t0,
            "non_padding": last.non_padding_fraction, "steps": last.step - first.step}


def run_baseline(folder: Path, spec_path: Path, args, flatten: bool = False) -> dict:
    import torch
    from multitask_operator.workspace import Workspace
    from multitask_trainer.encoding import PromptEncoder
    from multitask_trainer.prepare import read_split
    from multitask_trainer.specfile import load_spec_file
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    spec = load_spec_file(spec_path)
    ws = Workspace(folder / "ws")  # the split prepared for ours: identical examples
    tokenizer = AutoTokenizer.from_pretrained(spec.base_model.path)
    encoder = PromptEncoder(tokenizer, spec.training.max_seq_length)
    rows = []
    for task in spec.tasks:
        data = read_split(ws, task.name, "train")
        tokens = encoder.encode(task.instruction, [r["input"] for r in data],
                                [r["output"] for r in data])
        for i in range(len(tokens)):
            ids, prompt_len = tokens.example(i)
            ids = ids.tolist()
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                         "labels": [-100] * prompt_len + ids[prompt_len:]})
    cuda = args.device == "cuda"
    dtype = torch.bfloat16 if cuda and args.method == "lora" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(spec.base_model.path, dtype=dtype)
    if args.gradient_checkpointing:  # as multitask_trainer.train.build_model does
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if args.method == "lora":
        from multitask_trainer.modelio import lora_config
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(spec))
    collator = (DataCollatorWithFlattening() if flatten
                else DataCollatorForSeq2Seq(tokenizer, padding="longest"))
    batches: list[tuple[int, int]] = []

    def counting_collator(features):
        batch = collator(features)
        if "attention_mask" in batch:
            batches.append((int(batch["attention_mask"].sum()), batch["attention_mask"].numel()))
        else:  # flattened: one row, no padding
            batches.append((batch["input_ids"].numel(), batch["input_ids"].numel()))
        return batch

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, *__, **___):
            if state.global_step in (1, args.steps - 1):
                if cuda:
                    torch.cuda.synchronize()
                stamps.append(time.monotonic())

    training_args = TrainingArguments(
        output_dir=str(folder / "hf"), per_device_train_batch_size=args.batch_size,
        max_steps=args.steps, learning_rate=1e-4, lr_scheduler_type="cosine",
        warmup_steps=math.ceil(0.03 * args.steps), max_grad_norm=1.0, bf16=cuda, use_cpu=not cuda,
        logging_steps=10**6, save_strategy="no", report_to=[], remove_unused_columns=False,
        dataloader_num_workers=0, seed=0, disable_tqdm=True,
    )
    Trainer(model=model, args=training_args, train_dataset=rows, data_collator=counting_collator,
            callbacks=[Clock()]).train()
    steps = batches[1 : args.steps - 1]  # steps 2..N-1; the loader may fetch ahead: ignore it
    real = sum(r for r, _ in steps)
    return {"tokens": real, "seconds": stamps[-1] - stamps[0],
            "non_padding": real / sum(p for _, p in steps), "steps": args.steps - 2}


def flops_per_token(size: str, method: str, seq: float) -> float:
    s = SIZES[size]
    per_layer = 2 * s["hidden"] * s["hidden"] * (1 + s["kv"] / s["heads"]) + 3 * s["hidden"] * s[
        "ffn"]
    n = s["layers"] * per_layer
    return (6 if method == "full" else 4) * n + 12 * s["layers"] * s["hidden"] * seq


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model-size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                        help="bf16 (autocast, cuda only) or fp32")
    parser.add_argument("--method", choices=["lora", "full"], default=None,
                        help="default: full for tiny, lora otherwise")
    parser.add_argument("--model", help="smollm2: the model folder (default: the one `mtm "
                        "base-model smollm2-135m-instruct` writes to the cache)")
    parser.add_argument("--steps", type=int, default=None,
                        help="default: 60 CPU (12 smollm2), 40 GPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 16 (8 smollm2)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help="default: 256 tiny, 128 smollm2, 1024 1b")
    parser.add_argument("--micro-batch-tokens", type=int, default=None)
    parser.add_argument("--micro-batch-overhead", type=int, default=None)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--record", action="store_true", help="append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.dtype == "bf16" and args.device != "cuda":
        parser.error("--dtype bf16 needs --device cuda (CPU runs in fp32)")
    real = args.model_size == "smollm2"
    args.method = args.method or ("full" if args.model_size == "tiny" else "lora")
    args.steps = args.steps or (40 if args.device == "cuda" else 12 if real else 60)
    args.batch_size = args.batch_size or (8 if real else 16)
    args.max_seq_length = args.max_seq_length or {"tiny": 256, "smollm2": 128}.get(
        args.model_size, 1024)
    from multitask_trainer.__main__ import quiet_libraries

    quiet_libraries()
    if args.device == "cpu" and not real:
        import torch

        torch.set_num_threads(1)  # tiny models: threads cost more than they give (see tests)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if real:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from eval_speed import model_dir

            model = model_dir(args.model)
            # A word is a token or two here, after a ~35-token chat template: examples of
            # ~75 tokens at the median (the demo's shape), the longest near maxSeqLength.
            make_data(folder, examples=4000, max_words=args.max_seq_length // 2,
                      median_words=30)
        else:
            model = make_model(folder / "model", args.model_size)
            # A word is ~7 byte-level tokens with its space: the longest near maxSeqLength.
            words = args.max_seq_length // 8
            make_data(folder, examples=4000, max_words=words, median_words=words / 8)
        spec_path = write_spec(folder, model, args)
        if args.device == "cuda":
            # Untimed: the first training in a process pays for the GPU's warm-up (cuBLAS and
            # attention kernel choice per new shape, the caching allocator's growth): on the
            # H100, a 1b LoRA step took ~3x longer for the first dozen steps. Without this the
            # first row carries it and the later ones don't.
            run_ours(folder, spec_path, args, workspace="ws-warmup")
        runs = {
            "multitask_trainer": run_ours(folder, spec_path, args),
            "multitask_trainer --no-packing": run_ours(folder, spec_path, args, packing=False),
            "multitask_trainer, LM head at every position": run_ours(
                folder, spec_path, args, workspace="ws-head", head_everywhere=True),
            "transformers.Trainer": run_baseline(folder, spec_path, args),
            "transformers.Trainer + DataCollatorWithFlattening": run_baseline(
                folder, spec_path, args, flatten=True),
        }

    rows = []
    for name, r in runs.items():
        tps = r["tokens"] / r["seconds"]
        row = {"trainer": name, "tokens_per_s": tps, "non_padding": r["non_padding"]}
        if args.device == "cuda":
            import torch

            gpu = torch.cuda.get_device_name()
            peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
            seq = r["tokens"] / (r["steps"] * args.batch_size)
            flops = flops_per_token(args.model_size, args.method, seq) * tps
            row["mfu"] = flops / peak if peak else None
        rows.append(row)
    speed = {row["trainer"]: row["tokens_per_s"] for row in rows}
    trainer = speed["transformers.Trainer"]
    ratio = speed["multitask_trainer"] / trainer
    packing_ratio = speed["multitask_trainer"] / speed["multitask_trainer --no-packing"]
    head_ratio = speed["multitask_trainer"] / speed[
        "multitask_trainer, LM head at every position"]
    device = f"CPU ({platform.processor() or platform.machine()})"
    if args.device == "cuda":
        import torch

        device = torch.cuda.get_device_name()
    header = (f"{time.strftime('%Y-%m-%d')}, {device}, {torch_threads()} threads, model "
              f"{args.model_size} "
              f"({args.method}, {args.dtype}), batch {args.batch_size}, maxSeqLength "
              f"{args.max_seq_length}, {args.steps} steps")
    lines = [f"Run: `{' '.join(['python', *sys.argv])}` ({header})", "",
             "| trainer | non-padding tokens/s | non-padding share | vs Trainer | MFU |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        mfu = f"{row['mfu']:.1%}" if row.get("mfu") is not None else "n/a"
        lines.append(f"| {row['trainer']} | {row['tokens_per_s']:,.0f} | "
                     f"{row['non_padding']:.1%} | {row['tokens_per_s'] / trainer:.2f}x | {mfu} |")
    lines += ["", f"Throughput ratio (ours / Trainer): **{ratio:.2f}x**; packing / "
              f"--no-packing: {packing_ratio:.2f}x; LM head at target positions / at every "
              f"position: {head_ratio:.2f}x", ""]
    text = "\n".join(lines)
    print(text)
    if args.record:
        record(text)
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def record(text: str) -> None:
    """Append under `## Trainer throughput`, creating the file or section as needed; other
    sections are left as they are."""
    content = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION not in content:
        content = content.rstrip("\n") + f"\n\n{SECTION}\n\nMeasured by "
        content += "`benchmarks/trainer_throughput.py`; newest last.\n"
    start = content.index(SECTION)
    following = content.find("\n## ", start + len(SECTION))
    end = len(content) if following == -1 else following
    section = content[start:end].rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    RESULTS.write_text(content[:start] + section + content[end:])


if __name__ == "__main__":
    sys.exit(main())
