"""A reduced example for the slow local end-to-end tests: `intent` (4 labels) and `mood`
(2 labels) JSONL files and a tiny model whose tokenizer is learned from the intent text."""

from __future__ import annotations

import json
from pathlib import Path

WORDS = ["refund please", "where is my parcel", "cancel it", "log in fails"]
LABELS = ["refund", "shipping", "cancel", "account"]


def jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows))


def write_intent_and_mood(root: Path, intents: int, moods: int) -> None:
    """root/intent.jsonl, root/mood.jsonl and root/model."""
    from multitask_trainer.tiny_model import make_tiny_model

    jsonl(root / "intent.jsonl", [(f"{WORDS[i % 4]} {i}", LABELS[i % 4]) for i in range(intents)])
    jsonl(root / "mood.jsonl", [(f"{'great' if i % 2 else 'awful'} day {i}",
                                 "positive" if i % 2 else "negative") for i in range(moods)])
    make_tiny_model(root / "model", corpus=[root / "intent.jsonl"], vocab_size=300, hidden=32)
