"""Shared fixtures. Paths: REPO is the repository root; EXAMPLES its examples/ folder."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

MINIMAL_SPEC = {
    "baseModel": {"id": "Qwen/Qwen2.5-1.5B-Instruct"},
    "tasks": [
        {
            "name": "intent",
            "type": "classification",
            "labels": ["refund", "shipping", "other"],
            "instruction": "Classify the intent.",
            "data": {"train": "data/intent.jsonl"},
        },
        {
            "name": "summary",
            "type": "generation",
            "instruction": "Summarise.",
            "data": {"train": "data/summary.jsonl"},
        },
    ],
}


@pytest.fixture
def spec_dict() -> dict:
    """A minimal valid spec as a user writes it (camelCase, defaults omitted)."""
    return copy.deepcopy(MINIMAL_SPEC)


def manifest(spec: dict, name: str = "demo") -> dict:
    return {
        "apiVersion": "multitask.ai/v1alpha1",
        "kind": "MultiTaskModel",
        "metadata": {"name": name},
        "spec": spec,
    }
