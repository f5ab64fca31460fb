"""Classification scoring from one shared prompt pass (evaluate.label_scores) gives the scores
of the full pass per (input, label) pair (label_scores_rows), on labels of one and of several
tokens, and the same answers; evaluate prints progress lines with an ETA. The speed is measured
on SmolLM2 by benchmarks/eval_speed.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from multitask_trainer.encoding import PromptEncoder
from multitask_trainer.evaluate import Progress, common_prefix, label_scores, label_scores_rows


@pytest.mark.parametrize("batch", [16, 3])  # one batch; batches of sorted lengths, reordered
def test_shared_prompt_scoring_equals_the_full_passes(tiny_model_dir, one_thread, monkeypatch,
                                                      batch):
    monkeypatch.setattr("multitask_trainer.evaluate.PROMPT_BATCH", batch)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    encoder = PromptEncoder(tok, 64)
    inputs = ["the order arrived late and the box was open", "refund my money please",
              "great store", "login fails", "why", "where is the parcel I ordered last week"]
    labels = ["refund", "shipping", "account problem with a long label", "other"]
    assert len({len(t) for t in encoder.targets(labels)}) > 1  # labels of different lengths
    assert common_prefix(encoder.prompts("Which intent?", inputs)) > 5  # template, instruction
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


def test_the_common_prefix_leaves_every_prompt_a_token_of_its_own():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 3, 4, 7]]) == 3
    assert common_prefix([[1, 2, 3], [1, 2, 3, 4]]) == 2  # one prompt is all prefix
    assert common_prefix([[1, 2], [2, 2]]) == 0
    assert common_prefix([[1, 2, 3]]) == 2 and common_prefix([]) == 0


def _tiny(tiny_model_dir, seed: int = 1):
    """The tiny model with weights big enough that its answers depend on the input."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        for weight in model.parameters():
            if weight.dim() == 2:
                weight.normal_(0.0, 0.3)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, PromptEncoder(tok, 64)


def test_batched_generation_answers_each_input_in_its_place(tiny_model_dir, one_thread,
                                                             monkeypatch):
    """Generation batches prompts sorted by length: every answer still lands at its input."""
    from multitask_trainer.evaluate import generate

    model, encoder = _tiny(tiny_model_dir, seed=0)
    inputs = ["a much longer input than the others are", "hi", "short one", "mid length text"]
    alone = [generate(model, encoder, "Reply.", [text], 6)[0] for text in inputs]
    monkeypatch.setattr("multitask_trainer.evaluate.BATCH_ROWS", 2)
    assert generate(model, encoder, "Reply.", inputs, 6) == alone
    assert len(set(alone)) > 1  # the inputs get different answers: a mix-up would show


def test_no_inputs_no_scores(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    assert label_scores(model, PromptEncoder(tok, 64), "Which?", [], ["a", "b"]).shape == (0, 2)


INPUTS = [f"{w} order number {i} {w}" for i, w in enumerate(
    ["late", "refund", "great", "login", "broken", "box", "price", "call"] * 3)]
LABELS = ["refund", "shipping", "account", "other"]


def test_checked_scores_keep_the_full_precision_answers(tiny_model_dir, one_thread,
                                                        monkeypatch):
    """bf16 scores with every close call scored again in fp32: the fp32 answers. A huge margin
    rescores everything (the fp32 scores exactly); no margin leaves bf16's own scores."""
    from multitask_trainer import evaluate

    model, encoder = _tiny(tiny_model_dir)
    fast = copy.deepcopy(model).to(torch.bfloat16)
    monkeypatch.setattr(evaluate, "CALIBRATION", 4)
    exact = evaluate.label_scores(model, encoder, "Which?", INPUTS, LABELS)
    checked = evaluate.checked_scores(model, fast, encoder, "Which?", INPUTS, LABELS)
    assert checked.argmax(1).tolist() == exact.argmax(1).tolist()
    assert evaluate.classify(model, encoder, "Which?", INPUTS, LABELS, fast=fast) == [
        LABELS[j] for j in exact.argmax(1).tolist()]

    monkeypatch.setattr(evaluate, "MIN_MARGIN", 1e9)
    everything = evaluate.checked_scores(model, fast, encoder, "Which?", INPUTS, LABELS)
    assert torch.allclose(everything, exact, atol=1e-6)
    monkeypatch.setattr(evaluate, "MIN_MARGIN", 0.0)
    monkeypatch.setattr(evaluate, "CHECK_FACTOR", 0.0)
    unchecked = evaluate.checked_scores(model, fast, encoder, "Which?", INPUTS, LABELS)
    assert torch.equal(unchecked[:4], exact[:4])  # the calibration inputs: fp32
    assert (unchecked[4:] - exact[4:]).abs().max() > 1e-4  # the rest: bf16's own


def test_a_bf16_copy_only_where_it_is_fast(tiny_model_dir, monkeypatch):
    from multitask_trainer.evaluate import fast_copy

    model, _ = _tiny(tiny_model_dir)
    assert fast_copy(model, "cuda") is None  # a GPU evaluates in bf16 already
    monkeypatch.setenv("MTM_EVAL_BF16", "0")
    assert fast_copy(model, "cpu") is None
    monkeypatch.delenv("MTM_EVAL_BF16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert fast_copy(model, "cpu") is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    fast = fast_copy(model, "cpu")
    assert next(fast.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32  # a copy: the model is untouched
