"""What every upstream client is: the Upstream protocol and the Answer of a unary call."""

from __future__ import annotations

from collections.abc import AsyncGenerator
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

    def stream(
        self, prompt: str, parameters: dict[str, Any]
    ) -> AsyncGenerator[dict[str, Any], None]: ...

    async def health(self) -> None: ...

    async def info(self) -> dict[str, Any]: ...
