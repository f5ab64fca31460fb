"""The loss with the LM head only at target positions (train.target_loss) equals transformers'
causal LM loss over all positions, value and gradients, padded and packed, with and without
LoRA."""

from __future__ import annotations

import pytest
import torch
from multitask_trainer.train import KEEP_MASK_SUPPORTED, target_loss


def batches(vocab: int):
    torch.manual_seed(0)
    ids = torch.randint(3, vocab, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 9:11] = ids[0, 9:11]  # a two-token target, then padding
    labels[1, 4:6] = ids[1, 4:6]  # packed: two examples with their own targets
    labels[1, 10:12] = ids[1, 10:12]
    padded = {"input_ids": ids, "labels": labels,
              "attention_mask": (torch.arange(12) < torch.tensor([[11], [12]])).long()}
    packed = {"input_ids": ids[1:], "labels": labels[1:],
              "position_ids": torch.cat([torch.arange(6), torch.arange(6)]).unsqueeze(0)}
    return padded, packed


@pytest.mark.skipif(not KEEP_MASK_SUPPORTED, reason="transformers without boolean logits_to_keep")
@pytest.mark.parametrize("lora", [False, True])
def test_the_target_only_loss_is_transformers_loss(tiny_model_dir, one_thread, lora):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    for batch in batches(model.config.vocab_size):
        items = float((batch["labels"] != -100).sum())
        model.zero_grad()
        ours = target_loss(model, batch, items)
        ours.backward()
        ours_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        theirs = model(**batch, use_cache=False, num_items_in_batch=items).loss
        theirs.backward()
        their_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        assert torch.allclose(ours, theirs, atol=1e-5), (ours, theirs)
        assert len(ours_grads) == len(their_grads) > 0
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours_grads, their_grads,
                                                                  strict=True))
