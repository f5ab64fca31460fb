"""Loading the base model, a stage's result and the tokenizer, with errors people can act on.

A stage's `final/` directory holds either a LoRA adapter (adapter_config.json and
adapter_model.safetensors, method lora) or full weights (method full), plus the tokenizer.
The hub token, when the base model needs one, comes from the HF_TOKEN environment variable
(the Job maps spec.baseModel.hfTokenSecret to it).
"""

from __future__ import annotations

from pathlib import Path

from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.workspace import Workspace

from .errors import TrainerError


def base_source(spec: MultiTaskModelSpec) -> str:
    source = spec.base_model.path or spec.base_model.id
    if source is None:  # the spec's validation requires exactly one of them
        raise TrainerError("baseModel names neither an id nor a path")
    return source


def _describe(spec: MultiTaskModelSpec) -> str:
    if spec.base_model.path:
        return f"baseModel.path {spec.base_model.path}"
    return f"baseModel.id {spec.base_model.id}"


def load_tokenizer(spec: MultiTaskModelSpec):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(base_source(spec), revision=spec.base_model.revision)
    except Exception as err:  # OSError, ValueError, HTTP errors: all mean "does not load"
        raise TrainerError(f"{_describe(spec)}: the tokenizer does not load: {err}") from err
    if tok.pad_token_id is None:
        # Padding positions are masked out of attention and loss, so any id will do; EOS is
        # what most causal LMs without a pad token use.
        tok.pad_token = tok.eos_token
    return tok


def load_base(spec: MultiTaskModelSpec, dtype):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(
            base_source(spec), revision=spec.base_model.revision, dtype=dtype
        )
    except Exception as err:
        raise TrainerError(f"{_describe(spec)}: the model does not load: {err}") from err


def is_adapter(directory: Path) -> bool:
    return (directory / "adapter_config.json").is_file()


def load_stage(spec: MultiTaskModelSpec, ws: Workspace, stage: str, dtype, trainable: bool):
    """The model a finished stage produced: base + its adapter, or its full weights."""
    from transformers import AutoModelForCausalLM

    final = ws.final_dir(stage)
    if not ws.stage_done(stage):
        raise TrainerError(f"{final}: stage {stage} has not finished; train it first")
    if is_adapter(final):
        from peft import PeftModel

        return PeftModel.from_pretrained(load_base(spec, dtype), final, is_trainable=trainable)
    try:
        return AutoModelForCausalLM.from_pretrained(final, dtype=dtype)
    except Exception as err:
        raise TrainerError(f"{final}: the stage's model does not load: {err}") from err


def lora_config(spec: MultiTaskModelSpec):
    from peft import LoraConfig

    lora = spec.training.lora
    return LoraConfig(
        r=lora.r,
        # peft annotates an int; a float alpha works the same (the scale is alpha / r).
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        # "all-linear": every linear layer but the output head, what QLoRA showed works best.
        target_modules=lora.target_modules or "all-linear",
        task_type="CAUSAL_LM",
    )
