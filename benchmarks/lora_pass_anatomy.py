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


def timeit(model, bs, seq, label, n=10):
    ids = torch.randint(0, 32000, (bs, seq), device="cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for i in range(3 + n):
        if i == 3:
            torch.cuda.synchronize()
            t = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / n
    print(
        f"{label:40s} bs={bs} seq={seq}: {dt * 1000:7.1f} ms/step  {bs * seq / dt:9.0f} tok/s",
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
    base.gradient_checkpointing_enable()
    timeit(lora, 16, 512, f"lora + grad ckpt {attn}")


if __name__ == "__main__":
    main()
