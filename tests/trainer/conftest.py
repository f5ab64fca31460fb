"""Synthetic, learnable tasks and a tiny model for the trainer tests.

sentiment: binary, decided by one keyword; intent: 3 labels, decided by one keyword;
echo: generation, copy three letters. All are learnable by a 2-layer, 64-wide Llama in a few
hundred CPU steps, and small enough that a full pipeline run takes well under a minute.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml

FILLER = "the a my this order item today please thanks store box call again".split()
SENTIMENT = {"positive": ["great", "love"], "negative": ["awful", "hate"]}
INTENT = {"refund": ["refund", "money"], "shipping": ["ship", "deliver"], "account": ["login"]}
LETTERS = "abcdefgh"


def _sentence(rng: random.Random, keyword: str) -> str:
    words = rng.sample(FILLER, 1)
    words.append(keyword)  # last, after one filler word: learnable in a few hundred steps
    return " ".join(words)


def make_examples(task: str, n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(f"{task}:{seed}")
    out = []
    for _ in range(n):
        if task == "echo":
            text = "".join(rng.choice(LETTERS) for _ in range(3))
            out.append({"input": text, "output": text})
            continue
        table = SENTIMENT if task == "sentiment" else INTENT
        label = rng.choice(sorted(table))
        out.append({"input": _sentence(rng, rng.choice(table[label])), "output": label})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_spec(folder: Path, tasks: dict[str, int], model: str = "model", **training) -> Path:
    """A MultiTaskModel YAML in `folder` with data files next to it; returns its path."""
    specs = []
    for name, n in tasks.items():
        write_jsonl(folder / "data" / f"{name}.jsonl", make_examples(name, n))
        kind = "generation" if name == "echo" else "classification"
        specs.append({
            "name": name, "type": kind, "instruction": f"Do the {name} task.",
            "data": {"train": f"data/{name}.jsonl", "evalFraction": 0.2},
            "baseline": {"score": 0.5},
        })
    doc = {
        "apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
        "metadata": {"name": "test"},
        "spec": {
            "baseModel": {"path": model},
            "tasks": specs,
            "recipe": {"taskFiltering": "none", "highResourceThreshold": 150,
                       "stage1": {"epochs": 1}, "stage2": {"epochs": 1, "temperature": 2}},
            "training": {"batchSize": 16, "maxSeqLength": 64, "seed": 0, **training},
        },
    }
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread: with two, each op pays for synchronisation, and
    on a shared 2-core machine a spinning second thread can slow a run down several times."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny Llama whose tokenizer learned merges from the synthetic tasks' text."""
    from multitask_trainer.tiny_model import make_tiny_model

    folder = tmp_path_factory.mktemp("tiny")
    corpus = [write_jsonl(folder / f"{t}.jsonl", make_examples(t, 200, seed=99))
              for t in ("sentiment", "intent", "echo")]
    return make_tiny_model(folder / "model", corpus=corpus, vocab_size=400, hidden=64, layers=2)


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one process-wide AcceleratorState: a test that trains in-process on a
    GPU would leave it on cuda, and a later Accelerator(cpu=True) refuses to change it. Each
    test starts from none (on a CPU-only machine this changes nothing)."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
