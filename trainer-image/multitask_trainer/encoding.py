"""Examples to token ids: the prompt the model sees and the target it learns.

The prompt is `PromptFormat.render(instruction, input)` (multitask_operator.prompting), the same
text the gateway sends at serving time. The target is the output followed by EOS; only target
tokens carry loss. The rendered prompt is tokenized with add_special_tokens=False because chat
templates may already contain the BOS text; BOS is added by hand only when the tokenizer would
add one and the template did not, which is what the serving engine's tokenizer call does too.

A sequence longer than maxSeqLength loses the end of its *input* text, never the template's
suffix or the target, and is never dropped; such truncations are counted for the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from multitask_operator.prompting import PromptFormat, format_for_tokenizer


@dataclass
class TaskTokens:
    """All examples of one task as a flat token array; example i is tokens[starts[i]:][:lengths[i]]
    and its first prompt_lengths[i] tokens are prompt (no loss)."""

    tokens: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    prompt_lengths: np.ndarray
    truncated_inputs: int = 0
    truncated_targets: int = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def example(self, i: int) -> tuple[np.ndarray, int]:
        start = self.starts[i]
        return self.tokens[start : start + self.lengths[i]], int(self.prompt_lengths[i])


@dataclass
class PromptEncoder:
    tokenizer: Any  # a transformers tokenizer (untyped upstream)
    max_length: int
    format: PromptFormat = field(init=False)
    bos: list[int] = field(init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self.format = format_for_tokenizer(tok)
        with_special = tok("a", add_special_tokens=True)["input_ids"]
        without = tok("a", add_special_tokens=False)["input_ids"]
        adds_bos = (
            tok.bos_token_id is not None
            and len(with_special) > len(without)
            and with_special[0] == tok.bos_token_id
        )
        template_has_bos = bool(tok.bos_token) and self.format.prefix.startswith(tok.bos_token)
        self.bos = [tok.bos_token_id] if adds_bos and not template_has_bos else []
        if tok.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; targets could never end")

    def prompts(self, instruction: str, inputs: list[str]) -> list[list[int]]:
        texts = [self.format.render(instruction, text) for text in inputs]
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [self.bos + list(ids) for ids in encoded]

    def targets(self, outputs: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(outputs, add_special_tokens=False)["input_ids"]
        return [list(ids) + [self.tokenizer.eos_token_id] for ids in encoded]

    def fit_prompt(self, instruction: str, text: str, budget: int) -> list[int]:
        """The prompt with `text` cut to fit `budget` tokens: drop input tokens from the end and
        re-render, because the template suffix must stay intact."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        overhead = len(self.prompts(instruction, [""])[0])
        keep = max(0, budget - overhead)
        while True:
            cut = self.tokenizer.decode(ids[:keep], skip_special_tokens=False)
            prompt = self.prompts(instruction, [cut])[0]
            # Re-tokenizing decoded text can merge differently; shrink until it fits.
            if len(prompt) <= budget or keep == 0:
                return prompt[:budget]
            keep -= max(1, len(prompt) - budget)

    def encode(self, instruction: str, inputs: list[str], outputs: list[str]) -> TaskTokens:
        prompts = self.prompts(instruction, inputs)
        targets = self.targets(outputs)
        truncated_inputs = truncated_targets = 0
        sequences, prompt_lengths = [], []
        for i, (prompt, target) in enumerate(zip(prompts, targets, strict=True)):
            if len(prompt) + len(target) > self.max_length:
                # The target keeps at least half of the window; a longer target is cut at its
                # end (and counted) so that some of the input stays visible.
                if len(target) > self.max_length // 2:
                    target = target[: self.max_length // 2]
                    truncated_targets += 1
                budget = self.max_length - len(target)
                if len(prompt) > budget:
                    prompt = self.fit_prompt(instruction, inputs[i], budget)
                    truncated_inputs += 1
            sequences.append(prompt + target)
            prompt_lengths.append(len(prompt))
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        starts = np.zeros(len(sequences), dtype=np.int64)
        if len(sequences) > 1:
            starts[1:] = np.cumsum(lengths)[:-1]
        flat = np.fromiter((t for s in sequences for t in s), dtype=np.int64, count=lengths.sum())
        return TaskTokens(
            tokens=flat,
            starts=starts,
            lengths=lengths,
            prompt_lengths=np.array(prompt_lengths, dtype=np.int64),
            truncated_inputs=truncated_inputs,
            truncated_targets=truncated_targets,
        )
