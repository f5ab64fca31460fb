"""Clients for the inference server: TGI through its native API, vLLM through its OpenAI API.

Both speak TGI's shapes to the rest of the gateway: `generate` returns a /generate answer
(`{"generated_text", "details"?}`) with the prompt's token count when the server said it,
`stream` yields /generate_stream events (the last one's `details` carry `generated_tokens` and
`input_length`), and failures are `GatewayError`s that already say whose fault they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(slots=True)
class Answer:
    body: dict[str, Any]  # TGI's /generate answer: generated_text, details when asked for
    prompt_tokens: int | None = None  # as the inference server counted them, when it said


class Upstream(Protocol):
    engine: str
    url: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> Answer: ...

    def stream(self, prompt: str, parameters: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...

    async def health(self) -> None: ...

    async def info(self) -> dict[str, Any]: ...


def make_upstream(engine: str, url: str, timeout: float, served_model_name: str) -> Upstream:
    if engine == "tgi":
        from .tgi import TgiUpstream

        return TgiUpstream(url, timeout)
    if engine == "vllm":
        from .vllm import VllmUpstream

        return VllmUpstream(url, timeout, served_model_name)
    raise ValueError(f"engine '{engine}' is not supported; use tgi or vllm")
