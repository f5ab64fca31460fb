"""The prompt format shared by training and serving. Pure: no torch, no transformers import.

A task example becomes one user message, `instruction + "\n\n" + input`, wrapped in the
model's chat template when its tokenizer has one, or in the plain template below otherwise.
The target is the output (for classification: the label) followed by the end-of-sequence token.

Serving must wrap requests exactly as training did, but the gateway has no tokenizer. So the
trainer renders the chat template once around a sentinel and keeps what comes before and after
it (`PromptFormat`); export writes that to `prompt_format.json`, and the gateway's config
carries it. For templates whose output depends on the message text only by insertion (all
common ones), prefix + message + suffix equals the template's own rendering.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SENTINEL = "\u2063MTM-MESSAGE\u2063"  # invisible separator: never in real data


@dataclass(frozen=True)
class PromptFormat:
    prefix: str
    suffix: str
    source: str = "plain"  # "chat_template" or "plain"

    def render(self, instruction: str, text: str) -> str:
        return self.prefix + user_message(instruction, text) + self.suffix

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PromptFormat:
        return cls(prefix=data["prefix"], suffix=data["suffix"], source=data.get("source", "plain"))

    @classmethod
    def load(cls, path: str | Path) -> PromptFormat:
        return cls.from_dict(json.loads(Path(path).read_text()))


# The plain template, for tokenizers without a chat template:
#   ### Task:
#   <instruction>
#
#   <input>
#   ### Answer:
#   <output><eos>
PLAIN = PromptFormat(prefix="### Task:\n", suffix="\n### Answer:\n", source="plain")


def user_message(instruction: str, text: str) -> str:
    return f"{instruction}\n\n{text}"


def format_for_tokenizer(tokenizer: Any) -> PromptFormat:
    """The PromptFormat of a transformers tokenizer: its chat template if it has one."""
    if not getattr(tokenizer, "chat_template", None):
        return PLAIN
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": SENTINEL}], tokenize=False, add_generation_prompt=True
    )
    if rendered.count(SENTINEL) != 1:
        return PLAIN
    prefix, suffix = rendered.split(SENTINEL)
    return PromptFormat(prefix=prefix, suffix=suffix, source="chat_template")
