"""Clients for the inference server: TGI through huggingface_hub, vLLM through its OpenAI API.

Both speak TGI's shapes to the rest of the gateway: `generate` returns a /generate answer
(`{"generated_text", "details"?}`), `stream` yields /generate_stream events, and failures are
`GatewayError`s that already say whose fault they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol


class Upstream(Protocol):
    engine: str
    url: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def generate(self, prompt: str, parameters: dict[str, Any]) -> dict[str, Any]: ...

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
