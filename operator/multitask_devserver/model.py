"""The model behind `mtm serve-model`: transformers on CPU, one generation at a time.

Development only: production serves through TGI or vLLM. This loop decodes token by token with
a KV cache and supports what the gateway relies on: greedy or seeded sampling (temperature,
top-k, top-p, repetition penalty), stop sequences, LoRA adapters picked per request, and label
constraints enforced during decoding: a regex grammar that is an alternation of literals
(what the gateway sends) becomes a trie of the labels' token ids, and at every step the logits
of tokens that would leave the trie are masked out. A label is therefore the only possible
answer, whatever the weights are; nothing is matched after the fact.

torch and transformers are imported here, never by the gateway (its image does not carry them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


class RequestError(ValueError):
    """A request the dev server cannot serve (answered 422, TGI's validation error)."""


@dataclass
class Trie:
    """Token-id prefixes of the allowed answers; `end` marks a complete answer."""

    children: dict[int, Trie] = field(default_factory=dict)
    end: bool = False

    @classmethod
    def of(cls, sequences: list[list[int]]) -> Trie:
        root = cls()
        for sequence in sequences:
            node = root
            for token in sequence:
                node = node.children.setdefault(token, cls())
            node.end = True
        return root


@dataclass
class Finished:
    text: str
    reason: str  # length | eos_token | stop_sequence
    tokens: list[dict[str, Any]]
    seed: int | None
    prompt_tokens: int = 0  # the prompt's length in tokens, as TGI reports it


class DevModel:
    def __init__(self, directory: str | Path, max_total_tokens: int | None = None) -> None:
        directory = Path(directory)
        self.directory = directory
        base = directory / "base" if (directory / "base").is_dir() else directory
        if not (base / "config.json").is_file():
            raise FileNotFoundError(
                f"{base} has no config.json; expected an exported model (config, tokenizer and "
                "weights), or base/ plus adapters/<group>/"
            )
        self.tokenizer = AutoTokenizer.from_pretrained(base)
        model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        self.adapters: list[str] = []
        adapters_dir = directory / "adapters"
        if adapters_dir.is_dir():
            from peft import PeftModel

            groups = sorted(p.name for p in adapters_dir.iterdir() if p.is_dir())
            for i, group in enumerate(groups):
                if i == 0:
                    path = adapters_dir / group
                    model = PeftModel.from_pretrained(model, path, adapter_name=group)
                else:
                    model.load_adapter(str(adapters_dir / group), adapter_name=group)
            self.adapters = groups
        self.model = model.eval()
        positions = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_total_tokens = min(max_total_tokens or positions, positions)
        self.eos_id = self.tokenizer.eos_token_id
        self.special_ids = set(self.tokenizer.all_special_ids)
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant

    def label_trie(self, labels: list[str]) -> Trie:
        """The labels as token ids, tokenized the way training tokenized targets."""
        encode = self.tokenizer
        return Trie.of([encode(label, add_special_tokens=False).input_ids for label in labels])

    def generate(
        self,
        prompt: str,
        params: dict[str, Any],
        labels: list[str] | None,
        on_token: Callable[[dict[str, Any]], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Finished:
        with self._lock, torch.inference_mode():
            return self._generate(prompt, params, labels, on_token, cancelled)

    def _generate(self, prompt, params, labels, on_token, cancelled) -> Finished:  # noqa: ANN001
        input_ids = self.tokenizer(prompt, return_tensors="pt").input_ids
        truncate = params.get("truncate")
        if truncate:
            input_ids = input_ids[:, -truncate:]
        max_new = params.get("max_new_tokens") or 20
        if input_ids.shape[1] + max_new > self.max_total_tokens:
            raise RequestError(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. Given: "
                f"{input_ids.shape[1]} `inputs` tokens and {max_new} `max_new_tokens`"
            )
        self._select_adapter(params.get("adapter_id"))
        seed = params.get("seed")
        sampler = _Sampler(params, seed)
        trie = self.label_trie(labels) if labels else None
        node = trie
        generated: list[int] = []
        tokens: list[dict[str, Any]] = []
        text, reason = "", "length"
        past, step_input = None, input_ids
        stops = params.get("stop") or []
        for _ in range(max_new):
            if cancelled is not None and cancelled.is_set():
                break
            out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
            past = out.past_key_values
            logits = out.logits[0, -1].float()
            logits = sampler.penalize(logits, input_ids[0].tolist() + generated)
            if node is not None:
                logits = _mask(logits, node, self.eos_id)
            token = sampler.pick(logits)
            logprob = float(torch.log_softmax(logits, -1)[token])
            if token == self.eos_id:
                reason = "eos_token"
                tokens.append(self._event(token, "", logprob, special=True, on_token=on_token))
                break
            generated.append(token)
            decoded = str(self.tokenizer.decode(generated, skip_special_tokens=True))
            # Hold back a piece that ends inside a multi-byte character until it is complete.
            piece = "" if decoded.endswith("\ufffd") else decoded[len(text):]
            text += piece
            tokens.append(self._event(token, piece, logprob, token in self.special_ids, on_token))
            if any(stop in text for stop in stops):
                reason = "stop_sequence"
                break
            if node is not None:
                node = node.children[token]
                if node.end and (not node.children or self.eos_id is None):
                    reason = "eos_token"  # the label is complete and nothing can follow it
                    break
            step_input = torch.tensor([[token]])
        return Finished(text=text, reason=reason, tokens=tokens, seed=sampler.seed,
                        prompt_tokens=int(input_ids.shape[1]))

    def _select_adapter(self, adapter_id: str | None) -> None:
        if adapter_id is None:
            if self.adapters:
                raise RequestError(
                    f"this model is served as adapters; set parameters.adapter_id to one of "
                    f"{self.adapters}"
                )
            return
        if adapter_id not in self.adapters:
            loaded = ", ".join(self.adapters) or "none"
            raise RequestError(
                f"adapter_id '{adapter_id}' is not loaded; loaded adapters: {loaded}"
            )
        self.model.set_adapter(adapter_id)

    @staticmethod
    def _event(token, text, logprob, special, on_token) -> dict[str, Any]:  # noqa: ANN001
        event = {"id": token, "text": text, "logprob": logprob, "special": special}
        if on_token is not None:
            on_token(event)
        return event


def _mask(logits: torch.Tensor, node: Trie, eos_id: int | None) -> torch.Tensor:
    allowed = list(node.children)
    if node.end and eos_id is not None:
        allowed.append(eos_id)
    masked = torch.full_like(logits, float("-inf"))
    masked[allowed] = logits[allowed]
    return masked


class _Sampler:
    """TGI's logits processing: repetition penalty, then temperature, top-k and top-p when
    do_sample is set; greedy otherwise."""

    def __init__(self, params: dict[str, Any], seed: int | None) -> None:
        # As in TGI, setting a sampling knob turns sampling on.
        self.sample = bool(params.get("do_sample")) or any(
            params.get(k) is not None for k in ("top_k", "top_p")
        ) or params.get("temperature") not in (None, 1.0)
        self.temperature = params.get("temperature") or 1.0
        self.top_k = params.get("top_k")
        self.top_p = params.get("top_p")
        self.repetition = params.get("repetition_penalty")
        self.frequency = params.get("frequency_penalty")
        self.seed = seed if seed is not None else (
            int(torch.randint(0, 2**31 - 1, (1,))) if self.sample else None
        )
        self.generator = (torch.Generator().manual_seed(self.seed)
                          if self.sample and self.seed is not None else None)

    def penalize(self, logits: torch.Tensor, seen: list[int]) -> torch.Tensor:
        if not seen or (not self.repetition and not self.frequency):
            return logits
        index = torch.tensor(sorted(set(seen)))
        if self.repetition:
            chosen = logits[index]
            penalty = self.repetition
            logits[index] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
        if self.frequency:
            counts = torch.bincount(torch.tensor(seen), minlength=logits.shape[0]).float()
            logits = logits - self.frequency * counts
        return logits

    def pick(self, logits: torch.Tensor) -> int:
        if not self.sample:
            return int(torch.argmax(logits))
        logits = logits / self.temperature
        if self.top_k:
            threshold = torch.topk(logits, min(self.top_k, logits.shape[0])).values[-1]
            logits = torch.where(logits < threshold, float("-inf"), logits)
        probs = torch.softmax(logits, -1)
        if self.top_p and self.top_p < 1:
            ordered, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(ordered, -1) - ordered < self.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(probs, 1, generator=self.generator))
