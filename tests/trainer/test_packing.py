"""Packing a micro-batch's examples end to end (sampling.pack_rows, train.collate): the layout,
the padding it saves, and that training on packed rows is training on the same examples (same
loss, same gradients as the padded layout), which holds only while the model's attention keeps
packed examples apart (train.packing_isolates)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from multitask_trainer.encoding import TaskTokens
from multitask_trainer.sampling import (
    micro_batch_rows,
    micro_batches,
    pack_rows,
    padded_tokens,
)
from multitask_trainer.train import collate, packing_isolates, run_micro_batches
from transformers import LlamaConfig, LlamaForCausalLM


def test_rows_hold_every_example_once_and_never_exceed_the_longest():
    rng = np.random.default_rng(3)
    lengths = rng.integers(5, 400, size=64)
    group = rng.permutation(64)[:40]
    rows = pack_rows(lengths, group)
    placed = np.concatenate(rows)
    assert sorted(placed.tolist()) == sorted(group.tolist())
    longest = lengths[group].max()
    assert all(lengths[row].sum() <= longest for row in rows)
    assert len(rows) < len(group)
    assert pack_rows(lengths, np.empty(0, dtype=np.int64)) == []


def test_packing_wastes_less_than_padding_on_skewed_lengths():
    """Log-normal lengths (many short, a few long, as task data is), one micro-batch a step:
    padding computes mostly padding, packing mostly tokens."""
    rng = np.random.default_rng(0)
    lengths = np.minimum(np.exp(rng.normal(4.5, 0.8, size=16 * 50)).astype(int) + 8, 1024)
    steps = [np.arange(i, i + 16) for i in range(0, len(lengths), 16)]
    real = lengths.sum()
    padded = sum(padded_tokens(lengths, [s]) for s in steps)
    packed = sum(padded_tokens(lengths, [s], packed=True) for s in steps)
    assert real / padded < 0.5
    assert real / packed > 0.8
    # And on top of the bucketed micro-batches the trainer uses on CPU.
    groups = [g for s in steps for g in [s[g] for g in micro_batches(lengths[s], 4 * 1024, 1, 0,
                                                                         1024)]]
    assert padded_tokens(lengths, groups, packed=True) <= padded_tokens(lengths, groups)


def test_packed_steps_take_fewer_passes_under_the_same_memory_bound():
    """A long example among short ones: padded, splitting it off saves more padding than a pass
    costs; packed, the short ones fill rows and one pass is cheaper. The padded-size bound
    holds for every micro-batch either way."""
    lengths = np.array([1024] + [100] * 15)
    padded = micro_batches(lengths, 16 * 1024, 1, 0, 8 * 1024)
    packed = micro_batches(lengths, 16 * 1024, 1, 0, 8 * 1024, packed=True)
    assert [len(g) for g in padded] == [1, 15]
    assert [len(g) for g in packed] == [16]
    rng = np.random.default_rng(1)
    lengths = np.minimum(np.exp(rng.normal(4.5, 0.9, size=16 * 40)).astype(int) + 8, 1024)
    passes = {False: 0, True: 0}
    for s in range(0, len(lengths), 16):
        for flag in passes:
            groups = micro_batches(lengths[s:s + 16], 4 * 1024, 1, 0, 1024, packed=flag)
            passes[flag] += len(groups)
            assert sorted(np.concatenate(groups).tolist()) == list(range(16))
            assert all(len(g) * lengths[s:s + 16][g].max() <= 4 * 1024 or len(g) == 1
                       for g in groups)
    assert passes[True] < passes[False]


def test_collate_restarts_positions_and_masks_prompts_and_padding():
    tokens = np.arange(100, 120)
    data = [TaskTokens(tokens=tokens, starts=np.array([0, 5, 8]), lengths=np.array([5, 3, 4]),
                       prompt_lengths=np.array([3, 1, 2]))]
    task_ids, example_ids = np.zeros(3, dtype=np.int64), np.arange(3)
    batch = collate(data, task_ids, example_ids, [np.array([0, 1]), np.array([2])], 0,
                    packed=True)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [[100, 101, 102, 103, 104, 105, 106, 107],
                                           [108, 109, 110, 111, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 103, 104, -100, 106, 107],
                                        [-100, -100, 110, 111, -100, -100, -100, -100]]
    padded = collate(data, task_ids, example_ids, [np.array([0]), np.array([1])], 0,
                     packed=False)
    assert set(padded) == {"input_ids", "labels", "attention_mask"}
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256, **overrides)
    return LlamaForCausalLM(config)


def test_packed_and_padded_training_see_the_same_loss_and_gradients():
    from accelerate import Accelerator

    rng = np.random.default_rng(5)
    lengths = rng.integers(4, 40, size=12)
    prompts = np.maximum(1, lengths // 2)
    tokens = rng.integers(3, 64, size=int(lengths.sum()))
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data = [TaskTokens(tokens=tokens, starts=starts, lengths=lengths, prompt_lengths=prompts)]
    task_ids, example_ids = np.zeros(12, dtype=np.int64), np.arange(12)
    groups = [np.arange(12)]
    items = float((lengths - prompts).sum())
    accelerator = Accelerator(cpu=True)
    results = {}
    for packed in (False, True):
        model = tiny_llama()
        model.train()
        rows = [micro_batch_rows(lengths, g, packed) for g in groups]
        loss = run_micro_batches(model, accelerator, data, task_ids, example_ids, rows, 0, items)
        grads = torch.cat([p.grad.flatten() for p in model.parameters()])
        results[packed] = (loss.item(), grads)
    assert len(pack_rows(lengths, groups[0])) < 12  # the packed layout did pack
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    torch.testing.assert_close(results[True][1], results[False][1], rtol=1e-4, atol=1e-6)


def test_a_model_that_ignores_packed_positions_is_detected():
    assert packing_isolates(tiny_llama())

    class Leaky(LlamaForCausalLM):
        """Attention over the whole row: what a model without packed-sequence support does."""

        def forward(self, *args, position_ids=None, **kwargs):
            return super().forward(*args, **kwargs)

    torch.manual_seed(0)
    leaky = Leaky(tiny_llama().config)
    assert not packing_isolates(leaky)
    assert leaky.training  # the check leaves the model as it found it


def test_weights_that_cannot_be_checked_are_not_trusted():
    """Under FSDP's RAM-efficient loading a rank's weights may be on the meta device: rank 0
    decides, and without real weights to check it pads."""
    from accelerate import Accelerator
    from multitask_trainer.train import decide_packing

    accelerator = Accelerator(cpu=True)
    assert decide_packing(accelerator, tiny_llama())
    with torch.device("meta"):
        on_meta = tiny_llama()
    assert not decide_packing(accelerator, on_meta)
