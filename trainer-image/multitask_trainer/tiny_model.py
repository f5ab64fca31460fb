"""A tiny randomly initialised Llama-architecture causal LM and a byte-level BPE tokenizer.

    mtm tiny-model OUT_DIR [--corpus FILE.jsonl ...] [--vocab-size 512] [--hidden 64] [--layers 2]

Tests, `make demo` and benchmarks use it where a real model cannot be downloaded: it is saved
with `save_pretrained` and loaded back through `AutoModelForCausalLM` / `AutoTokenizer
.from_pretrained`, the same code path that loads real models. With `--corpus` (JSON Lines of
{input, output}) the tokenizer learns BPE merges from that text, which shortens sequences several
times over raw bytes; without it every byte is one token.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

# Llama-style chat markup, kept short so that tiny models spend few tokens on it.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]


def _corpus_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                record = json.loads(line)
                yield f"{record.get('input', '')}\n{record.get('output', '')}"


def build_tokenizer(corpus: Iterable[str | Path] = (), vocab_size: int = 512, chat: bool = True):
    """A byte-level BPE `PreTrainedTokenizerFast`; merges learned from `corpus` if given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, len(alphabet) + len(SPECIAL_TOKENS)),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    # With no corpus the trainer still adds the 256 byte symbols: a pure byte tokenizer.
    tok.train_from_iterator(_corpus_texts(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    if chat:
        fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(
    out_dir: str | Path,
    corpus: Iterable[str | Path] = (),
    vocab_size: int = 512,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    max_positions: int = 1024,
    seed: int = 0,
    chat: bool = True,
) -> Path:
    """Write a tiny Llama and its tokenizer to `out_dir`; return the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus, vocab_size=vocab_size, chat=chat)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
