"""Fixtures of the operator's integration tests: a tiny model and a spec whose data is local.

Three tasks: two classification tasks (the kept group, each with a Service whose pods request
GPUs) and a generation task that byType filtering leaves on its own service. Training is cut
to a couple of CPU steps: the tests check the operator's orchestration, not model quality.
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
from multitask_operator.reconcile import core

from tests.crd_admission import status_errors

WORDS = "the a my order item today please thanks store box call again".split()
KEYWORDS = {
    "sentiment": {"positive": "great", "negative": "awful"},
    "intent": {"refund": "refund", "shipping": "deliver", "account": "login"},
}


def _examples(task: str, n: int) -> list[dict[str, str]]:
    rng = random.Random(task)
    if task == "echo":
        return [{"input": w, "output": w} for w in (rng.choice(WORDS) for _ in range(n))]
    table = KEYWORDS[task]
    rows = []
    for i in range(n):
        label = sorted(table)[i % len(table)]
        rows.append({"input": " ".join(rng.sample(WORDS, 3) + [table[label]]), "output": label})
    return rows


@pytest.fixture(scope="session")
def operator_data(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("operator-data")
    paths = {}
    for task in ("sentiment", "intent", "echo"):
        path = folder / f"{task}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in _examples(task, 24)))
        paths[task] = path
    return paths


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, operator_data) -> Path:
    from multitask_trainer.tiny_model import make_tiny_model

    folder = tmp_path_factory.mktemp("operator-tiny")
    return make_tiny_model(folder / "model", corpus=list(operator_data.values()), vocab_size=300,
                           hidden=32, layers=1)


@pytest.fixture
def spec_factory(operator_data, tmp_path_factory):
    def make() -> dict:
        # The model path is only read by the trainer; tests that never train need no model.
        model = str(tmp_path_factory.getbasetemp() / "no-model")
        return copy.deepcopy({
            "baseModel": {"path": model},
            "tasks": [
                {"name": "sentiment", "type": "classification",
                 "labels": ["negative", "positive"], "instruction": "Positive or negative?",
                 "data": {"train": str(operator_data["sentiment"]), "evalFraction": 0.25},
                 "baseline": {"score": 0.01, "gpus": 1}, "service": {"name": "sentiment-svc"}},
                {"name": "intent", "type": "classification",
                 "labels": ["account", "refund", "shipping"], "instruction": "Which intent?",
                 "data": {"train": str(operator_data["intent"]), "evalFraction": 0.25},
                 "baseline": {"score": 0.01, "gpus": 1}, "service": {"name": "intent-svc"}},
                {"name": "echo", "type": "generation", "instruction": "Repeat the word.",
                 "data": {"train": str(operator_data["echo"]), "evalFraction": 0.25},
                 "baseline": {"score": 0.5, "gpus": 1}, "service": {"name": "echo-svc"}},
            ],
            "recipe": {"taskFiltering": "byType", "keep": "largest",
                       "highResourceThreshold": 100000},
            "training": {"batchSize": 4, "maxSeqLength": 48, "maxSteps": 2, "seed": 0,
                         "resources": {"gpus": 0, "memory": "1Gi"}},
            "serving": {"resources": {"gpus": 1}},
        })
    return make


@pytest.fixture(autouse=True)
def statuses_fit_the_crd(monkeypatch):
    """Every status a test makes the reconcile core write fits the CRD's status schema: the
    status as the core built it (before it is typed), so that a mistyped key fails a test
    instead of being pruned by the API server in front of a user."""
    finish = core._Decision.finish

    def checked(self, *args, **kwargs):
        outcome = finish(self, *args, **kwargs)
        assert status_errors(core.json_safe(self.status)) == []
        assert status_errors(outcome.status) == []
        return outcome

    monkeypatch.setattr(core._Decision, "finish", checked)
