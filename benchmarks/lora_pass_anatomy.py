"""Anatomy of one training step of the 1.1B Llama on a GPU: full fine-tuning vs LoRA (peft,
all linear layers, r=16), bf16, SDPA attention; forward + backward + AdamW, no data loading.

    python benchmarks/lora_pass_anatomy.py        # needs a CUDA GPU; prints ms/step and tokens/s

It separates what the model and peft cost from what the trainer adds (benchmarks/
trainer_throughput.py measures the whole trainer). Results: benchmarks/RESULTS.md.
"""

import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

cfg = LlamaConfig(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=5632,
    num_hidden_layers=22,
    num_attention_heads=32,
    num_key_value_heads=4,
    max_position_embeddings=4096,
)


def timeit(model, bs, seq, label, n=10, autocast=False):
    """Wall ms per step, and host ms: the time the Python thread takes to issue the step's
    kernels (forward, backward, optimizer) before waiting for the GPU. Host ~= wall means the
    step is bound by the CPU (Python, dispatch, launches), not by the GPU."""
    ids = torch.randint(0, 32000, (bs, seq), device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            fused=True)
    host = 0.0
    for i in range(3 + n):
        if i == 3:
            torch.cuda.synchronize()
            t, host = time.perf_counter(), 0.0
        h = time.perf_counter()
        with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        host += time.perf_counter() - h
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / n
    print(
        f"{label:44s} bs={bs} seq={seq}: {dt * 1000:7.1f} ms/step (host {host / n * 1000:6.1f})"
        f"  {bs * seq / dt:9.0f} tok/s",
        flush=True,
    )


def main() -> None:
    attn = "sdpa"
    base = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    base.config._attn_implementation = attn
    timeit(base, 16, 128, f"full bf16 {attn}")
    timeit(base, 16, 512, f"full bf16 {attn}")
    lora = get_peft_model(
        base, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    timeit(lora, 16, 128, f"lora all-linear bf16 {attn}")
    timeit(lora, 16, 512, f"lora all-linear bf16 {attn}")
    timeit(lora, 16, 1024, f"lora all-linear bf16 {attn}")
    # As multitask_trainer runs it: bf16 base, fp32 adapters, accelerate's bf16 autocast.
    timeit(lora, 16, 128, f"lora all-linear, autocast (the trainer) {attn}", autocast=True)
    timeit(lora, 16, 1024, f"lora all-linear, autocast (the trainer) {attn}", autocast=True)
    base.gradient_checkpointing_enable()
    timeit(lora, 16, 512, f"lora + grad ckpt {attn}")


if __name__ == "__main__":
    main()
