"""JSON from outside (request bodies, the config file) with bounds, so that no input reaches
Python's recursion limit, its 4,300-digit int limit or an engine's Unicode encoder.

`loads` refuses NaN and Infinity (not JSON numbers, though Python reads them), integers longer
than any real field needs and nesting past Python's recursion limit; `check_tree` bounds depth
and refuses lone surrogates (a `\\ud800` escape decodes to text that no engine can encode).
Each problem is a `JsonProblem` whose message names it in one line.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
MAX_INT_DIGITS = 20  # a u64 seed


class JsonProblem(ValueError):
    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonProblem(f"holds an integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _parse_constant(name: str) -> Any:
    raise JsonProblem(f"holds {name}, which is not a JSON number")


def loads(data: bytes | str) -> Any:
    """Parsed JSON; JsonProblem for a bound, ValueError (json.JSONDecodeError,
    UnicodeDecodeError) for text that is not JSON."""
    try:
        return json.loads(data, parse_int=_parse_int, parse_constant=_parse_constant)
    except RecursionError:
        raise JsonProblem(f"nests deeper than {MAX_DEPTH} levels") from None


def may_need_check(data: bytes) -> bool:
    """Whether check_tree can find anything (C-speed tests): only a body with many brackets can
    nest deeply, and only one with a \\uD8xx-\\uDFxx escape can hold a lone surrogate."""
    return (data.count(b"[") + data.count(b"{") > MAX_DEPTH or b"\\ud" in data
            or b"\\uD" in data)


def check_tree(data: Any) -> None:
    """Depth and lone surrogates, iteratively; JsonProblem names the path."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise JsonProblem(f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path)
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(value, path)


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        where = path[:80] or None
        raise JsonProblem(
            f"{where or 'a key'}: not valid Unicode (a lone surrogate at character "
            f"{error.start})", where,
        ) from None
