"""The dev server's decoding loop: label constraints by token-prefix masking, limits, and LoRA
adapters picked per request (the all-as-adapters export layout)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tiny_model):
    from multitask_devserver.model import DevModel

    return DevModel(tiny_model)


def test_constrained_answers_are_labels_even_with_shared_prefixes(model):
    labels = ["pos", "positive", "neg", "négatif"]
    answers = set()
    for seed in range(16):
        done = model.generate("How was it?", {"max_new_tokens": 12, "do_sample": True,
                                              "temperature": 5.0, "seed": seed}, labels)
        assert done.text in labels
        assert done.reason == "eos_token"
        answers.add(done.text)
    assert len(answers) >= 2


def test_unconstrained_greedy_is_deterministic_and_bounded(model):
    first = model.generate("Hello", {"max_new_tokens": 5}, None)
    again = model.generate("Hello", {"max_new_tokens": 5}, None)
    assert first.text == again.text
    assert len(first.tokens) <= 5


def test_stop_sequences_end_generation(model):
    free = model.generate("Hello", {"max_new_tokens": 12}, None)
    if len(free.text) < 2:
        pytest.skip("the random model ended at once")
    stop = free.text[1]
    done = model.generate("Hello", {"max_new_tokens": 12, "stop": [stop]}, None)
    assert done.reason == "stop_sequence" and done.text.endswith(stop)


def test_prompt_plus_new_tokens_must_fit(tiny_model):
    from multitask_devserver.model import DevModel, RequestError

    small = DevModel(tiny_model, max_total_tokens=16)
    with pytest.raises(RequestError, match="must be <= 16"):
        small.generate("x" * 40, {"max_new_tokens": 4}, None)


def test_adapters_are_picked_per_request(tiny_model, tmp_path):
    import shutil

    from multitask_devserver.model import DevModel, RequestError
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shutil.copytree(tiny_model, tmp_path / "base")
    for seed, group in enumerate(["classification", "generation"]):
        import torch

        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        # init_lora_weights=False: random B as well as A, so the adapters change the logits.
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(tmp_path / "adapters" / group)
    model = DevModel(tmp_path)
    assert model.adapters == ["classification", "generation"]
    with pytest.raises(RequestError, match="set parameters.adapter_id to one of"):
        model.generate("x", {"max_new_tokens": 2}, None)
    with pytest.raises(RequestError, match="adapter_id 'nope' is not loaded"):
        model.generate("x", {"max_new_tokens": 2, "adapter_id": "nope"}, None)
    logprobs = {
        group: [t["logprob"] for t in model.generate(
            "Hello", {"max_new_tokens": 3, "adapter_id": group}, None).tokens]
        for group in model.adapters
    }
    assert logprobs["classification"] != logprobs["generation"]


def test_a_directory_without_a_model_is_named(tmp_path):
    from multitask_devserver.model import DevModel

    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no config.json"):
        DevModel(tmp_path)
