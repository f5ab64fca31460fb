"""Prompts as serving renders them; loss on target tokens only; truncation on the input side."""

from __future__ import annotations

import numpy as np
import pytest
from multitask_operator.prompting import PLAIN
from multitask_trainer.encoding import PromptEncoder
from multitask_trainer.tiny_model import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()  # byte level: one token per byte, easy to count


def test_prompt_is_the_shared_format_and_target_ends_with_eos(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=256)
    tokens = encoder.encode("Say it.", ["hello"], ["yes"])
    ids, prompt_len = tokens.example(0)
    prompt = tokenizer.decode(ids[:prompt_len].tolist())
    assert prompt == encoder.format.render("Say it.", "hello")
    assert prompt.startswith("<|user|>\n") and prompt.endswith("<|assistant|>\n")
    assert ids[prompt_len:].tolist() == tokenizer("yes")["input_ids"] + [tokenizer.eos_token_id]
    assert tokens.truncated_inputs == 0


def test_plain_template_without_chat_template():
    encoder = PromptEncoder(build_tokenizer(chat=False), max_length=256)
    assert encoder.format == PLAIN


def test_long_input_is_cut_at_the_input_never_the_suffix_or_target(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=60)
    long_input = "x" * 500
    tokens = encoder.encode("Say it.", [long_input, "short"], ["yes", "no"])
    assert len(tokens) == 2  # nothing dropped
    assert tokens.truncated_inputs == 1
    ids, prompt_len = tokens.example(0)
    assert len(ids) <= 60
    prompt = tokenizer.decode(ids[:prompt_len].tolist())
    assert prompt.endswith("xx\n<|assistant|>\n")
    assert tokenizer.decode(ids[prompt_len:].tolist()) == "yes</s>"


def test_an_overlong_target_is_cut_and_counted(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=64)
    tokens = encoder.encode("Say it.", ["hi"], ["y" * 200])
    assert tokens.truncated_targets == 1
    assert tokens.lengths[0] <= 64


def test_flat_layout_matches_per_example_views(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=128)
    tokens = encoder.encode("I.", ["a", "bbb", "cc"], ["1", "22", "333"])
    assert tokens.starts.tolist() == [0, tokens.lengths[0], tokens.lengths[:2].sum()]
    assert int(tokens.lengths.sum()) == len(tokens.tokens)
    assert np.all(tokens.prompt_lengths < tokens.lengths)
