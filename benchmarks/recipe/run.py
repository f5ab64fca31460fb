"""Run the recipe ablation on the benchmark suite and print its table.

    python benchmarks/recipe/run.py                       # 3 seeds, tiny model, CPU
    python benchmarks/recipe/run.py --seeds 1 --sweep     # plus tau x K of the recipe
    python benchmarks/recipe/run.py --seeds 1 --stage1-epochs 2 \\
        --workspace workspace/recipe-bench-stage1x2       # a longer stage 1
    python benchmarks/recipe/run.py --hidden 1024 --layers 16 --heads 16 --learning-rate 3e-4 \\
        --model-dir /tmp/llama-270m --workspace workspace/recipe-bench-gpu   # on a GPU

1. Writes the suite's data if missing (generate.py, seed 20261123).
2. Makes the base model if missing: a randomly initialised Llama-architecture model of the given
   shape (hidden size, layers, heads) with a BPE tokenizer learned from the suite's training
   text, in benchmarks/recipe/tiny-model (or --model-dir). With --model-dir, --stage1-epochs
   or --learning-rate, model.yaml is copied into the workspace with those changes (and
   absolute data paths) and the copy is what runs.
3. Runs `mtm ablate benchmarks/recipe/model.yaml` (resumable: rerun the same command) and prints
   WORKSPACE/ablation/ablation.md plus the machine and the wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def ensure_data() -> None:
    if not (HERE / "data" / "topic" / "train.jsonl").is_file():
        subprocess.run([sys.executable, str(HERE / "generate.py")], check=True)


def ensure_model(path: Path, hidden: int, layers: int, heads: int) -> None:
    if (path / "config.json").is_file():
        return
    from multitask_trainer.tiny_model import make_tiny_model

    corpus = sorted(HERE.glob("data/*/train.jsonl"))
    make_tiny_model(path, corpus=corpus, vocab_size=512, hidden=hidden, layers=layers,
                    heads=heads)
    print(f"made a random Llama (hidden {hidden}, {layers} layers, {heads} heads) in {path}")


def spec_file(args: argparse.Namespace) -> Path:
    """model.yaml, or a copy in the workspace (absolute paths) with baseModel.path --model-dir,
    recipe.stage1.epochs --stage1-epochs and training.learningRate --learning-rate."""
    spec = HERE / "model.yaml"
    model_dir, stage1_epochs, workspace = args.model_dir, args.stage1_epochs, args.workspace
    if model_dir is None and stage1_epochs is None and args.learning_rate is None:
        return spec
    document = yaml.safe_load(spec.read_text())
    model_dir = model_dir or HERE / "tiny-model"
    document["spec"]["baseModel"] = {"path": str(model_dir.resolve())}
    if stage1_epochs is not None:
        document["spec"]["recipe"]["stage1"]["epochs"] = stage1_epochs
    if args.learning_rate is not None:
        document["spec"]["training"]["learningRate"] = args.learning_rate
    for task in document["spec"]["tasks"]:
        task["data"] = {split: str(HERE / path) for split, path in task["data"].items()}
    workspace.mkdir(parents=True, exist_ok=True)
    copy = workspace / "model.yaml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def machine() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--workspace", type=Path, default=Path("workspace/recipe-bench"))
    parser.add_argument("--model-dir", type=Path, help="base model folder (made if missing)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--stage1-epochs", type=float,
                        help="replace recipe.stage1.epochs (0.5 in model.yaml)")
    parser.add_argument("--learning-rate", type=float,
                        help="replace training.learningRate (1e-3 in model.yaml, for hidden 64)")
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()

    ensure_data()
    ensure_model(args.model_dir or HERE / "tiny-model", args.hidden, args.layers, args.heads)
    command = [sys.executable, "-m", "multitask_operator.cli", "ablate",
               str(spec_file(args)),
               "--seeds", str(args.seeds), "--workspace", str(args.workspace)]
    command += ["--sweep"] * args.sweep + ["--fresh"] * args.fresh
    print("$ " + " ".join(command[2:]).replace("multitask_operator.cli", "mtm", 1), flush=True)
    began = time.monotonic()
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        return done.returncode
    print(f"\nmachine: {machine()}; wall time {time.monotonic() - began:.0f} s "
          f"({time.strftime('%Y-%m-%d', time.gmtime())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
