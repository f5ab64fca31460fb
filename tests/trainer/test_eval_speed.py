"""Classification scoring from one shared prompt pass (evaluate.label_scores) gives the scores
of the full pass per (input, label) pair (label_scores_rows), on labels of one and of several
tokens, and the same answers; evaluate prints progress lines with an ETA. The speed is measured
on SmolLM2 by benchmarks/eval_speed.py."""

from __future__ import annotations

import json

import torch
from multitask_trainer.encoding import PromptEncoder
from multitask_trainer.evaluate import Progress, label_scores, label_scores_rows


def test_shared_prompt_scoring_equals_the_full_passes(tiny_model_dir, one_thread):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    encoder = PromptEncoder(tok, 64)
    inputs = ["the order arrived late", "refund my money please", "great store", "login fails"]
    labels = ["refund", "shipping", "account problem with a long label", "other"]
    assert len({len(t) for t in encoder.targets(labels)}) > 1  # labels of different lengths
    fast = label_scores(model, encoder, "Which intent?", inputs, labels)
    slow = label_scores_rows(model, encoder, "Which intent?", inputs, labels)
    assert torch.allclose(fast, slow, atol=1e-4), (fast, slow)
    assert fast.argmax(dim=1).tolist() == slow.argmax(dim=1).tolist()


def test_progress_lines_have_an_eta(capsys, monkeypatch):
    monkeypatch.setattr("multitask_trainer.evaluate.PROGRESS_EVERY_S", 0.0)
    progress = Progress(4)
    progress.advance(2)
    progress.advance(2)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["step"] for x in lines] == [2, 4] and lines[-1]["percent"] == 100.0
    assert lines[0]["stage"] == "evaluate" and lines[0]["totalSteps"] == 4
    assert lines[-1]["etaSeconds"] == 0.0
