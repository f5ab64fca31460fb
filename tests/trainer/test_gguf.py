"""A GGUF base model: a tiny Llama written here with the gguf package's writer (llama.cpp's
tensor names and q/k permutation, a byte-level gpt2 tokenizer), converted by the prepare step
into a Hugging Face folder through the same code path as a real file, and equal to the original
weights and logits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main
from multitask_trainer.errors import TrainerError
from multitask_trainer.gguf import convert

from tests.trainer.conftest import write_spec

gguf = pytest.importorskip("gguf")  # in the trainer extra: skipped only outside `make install`

NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _bytes_to_unicode() -> list[str]:
    """GPT-2's printable stand-in for each byte (what a byte-level BPE vocabulary spells)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q and k rows (transformers undoes it)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def write_tiny_gguf(path) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    tokens = _bytes_to_unicode() + ["<|endoftext|>", "<|im_start|>"]
    config = LlamaConfig(vocab_size=len(tokens), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=False, bos_token_id=256, eos_token_id=256)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(2)
    writer.add_context_length(128)
    writer.add_embedding_length(32)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_dimension_count(8)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * 256 + [3, 3])
    writer.add_token_merges([])
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_bos_token_id(256)
    writer.add_eos_token_id(256)
    for name, tensor in model.state_dict().items():
        w = tensor.numpy().astype(np.float32)
        if name == "model.embed_tokens.weight":
            out = "token_embd.weight"
        elif name == "model.norm.weight":
            out = "output_norm.weight"
        elif name == "lm_head.weight":
            out = "output.weight"
        else:
            layer, rest = name.split(".")[2], ".".join(name.split(".")[3:-1])
            out = f"blk.{layer}.{NAMES[rest]}.weight"
            if rest == "self_attn.q_proj":
                w = _permute(w, 4)
            elif rest == "self_attn.k_proj":
                w = _permute(w, 2)
        writer.add_tensor(out, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model


def test_a_gguf_file_converts_to_the_same_model(tmp_path):
    original = write_tiny_gguf(tmp_path / "tiny.gguf")
    folder = convert(tmp_path / "tiny.gguf", tmp_path / "base-model")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    for name, tensor in original.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], tensor), name
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("hello world", return_tensors="pt").input_ids
    assert tokenizer.decode(ids[0]) == "hello world"
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, original(ids).logits, atol=1e-5)
    # Converted once: a second call keeps the folder.
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    convert(tmp_path / "tiny.gguf", folder)
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp


def test_prepare_converts_a_gguf_base_model_for_the_later_steps(tmp_path):
    write_tiny_gguf(tmp_path / "tiny.gguf")
    spec = write_spec(tmp_path, {"sentiment": 40, "intent": 30}, model="tiny.gguf")
    ws = tmp_path / "ws"
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    stored = json.loads(Workspace(ws).spec_file.read_text())
    assert stored["baseModel"]["path"] == str(ws / "base-model")
    assert (ws / "base-model" / "config.json").is_file()
    # The original spec is what the workspace was prepared for: prepare again is a no-op.
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0


def test_a_file_that_is_not_gguf_is_one_sentence(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    with pytest.raises(TrainerError, match=r"broken.gguf: not a GGUF model transformers can"):
        convert(tmp_path / "broken.gguf", tmp_path / "out")
    with pytest.raises(TrainerError, match="missing.gguf: file not found"):
        convert(tmp_path / "missing.gguf", tmp_path / "out")
    doc = yaml.safe_load(write_spec(tmp_path, {"sentiment": 40}, model="x").read_text())
    assert doc["spec"]["baseModel"]["path"] == "x"
