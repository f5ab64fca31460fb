"""Clients for the inference server: TGI through its native API, vLLM through its OpenAI API.

Both speak TGI's shapes to the rest of the gateway: `generate` returns a /generate answer
(`{"generated_text", "details"?}`) with the prompt's token count when the server said it,
`stream` yields /generate_stream events (the last one's `details` carry `generated_tokens` and
`input_length`), and failures are `GatewayError`s that already say whose fault they are.
"""

from __future__ import annotations

from .base import Answer, Upstream

__all__ = ["Answer", "Upstream", "make_upstream"]


def make_upstream(engine: str, url: str, timeout: float, served_model_name: str) -> Upstream:
    if engine == "tgi":
        from .tgi import TgiUpstream

        return TgiUpstream(url, timeout)
    if engine == "vllm":
        from .vllm import VllmUpstream

        return VllmUpstream(url, timeout, served_model_name)
    raise ValueError(f"engine '{engine}' is not supported; use tgi or vllm")
