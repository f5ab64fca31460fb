"""Base models from GGUF files (`baseModel.path: .../model.gguf`).

A GGUF file holds a model's weights (often quantised), its config and its tokenizer in one
file, as llama.cpp writes it. transformers reads it (with the `gguf` package), dequantising the
weights on load, but cannot save what it loaded (its quantisation config refuses). The prepare
step therefore converts the file once into a plain Hugging Face folder in the workspace
(`base-model/`: config, fp32 safetensors, tokenizer), and the spec prepare stores for the later
steps names that folder: every other step loads it like any `baseModel.path`, in about a second.
"""

from __future__ import annotations

from pathlib import Path

from multitask_operator.workspace import publish, read_marker

from .errors import TrainerError

SUFFIX = ".gguf"


def is_gguf(path: str | None) -> bool:
    return bool(path) and str(path).lower().endswith(SUFFIX)


def convert(gguf_file: Path, out: Path) -> Path:
    """A Hugging Face folder at `out` holding the model of `gguf_file` (reused when a finished
    one for the same file is there)."""
    if not gguf_file.is_file():
        raise TrainerError(f"baseModel.path {gguf_file}: file not found")
    stat = gguf_file.stat()
    source = {"gguf": str(gguf_file), "bytes": stat.st_size}
    marker = read_marker(out) if out.is_dir() else None
    if marker and {k: marker.get(k) for k in source} == source:
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    except Exception as err:  # ImportError (no gguf), ValueError (an unsupported file), ...
        raise TrainerError(f"baseModel.path {gguf_file}: not a GGUF model transformers can "
                           f"load: {type(err).__name__}: {err}") from err
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are dequantised now; nothing to undo
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), strict=True)
    with publish(out, {**source, "parameters": plain.num_parameters()}) as scratch:
        plain.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
    return out
