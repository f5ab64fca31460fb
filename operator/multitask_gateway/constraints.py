"""Label constraints as a regex grammar: written by the gateway, read back by the dev server.

TGI compiles `grammar: {"type": "regex", "value": ...}` into a token-level automaton (outlines),
so a classification answer can only be one of the labels. The regex here is a plain alternation
of escaped literals, the subset that every engine's regex dialect (outlines, xgrammar, Python)
reads the same way, and that `literal_alternatives` can turn back into the label list.
"""

from __future__ import annotations

# Characters with a meaning in a regex outside a character class.
_SPECIAL = set("\\.^$*+?{}[]|()")


def escape(text: str) -> str:
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def label_regex(labels: tuple[str, ...] | list[str]) -> str:
    """A regex that matches exactly one of `labels` (the whole output, as TGI anchors it)."""
    return "(" + "|".join(escape(label) for label in labels) + ")"


def label_grammar(labels: tuple[str, ...] | list[str]) -> dict[str, str]:
    return {"type": "regex", "value": label_regex(labels)}


def max_label_tokens(labels: tuple[str, ...] | list[str]) -> int:
    """Enough new tokens to finish any label: every token carries at least one byte of text,
    plus one for the end-of-sequence token."""
    return max(len(label.encode("utf-8")) for label in labels) + 1


def literal_alternatives(regex: str) -> list[str]:
    """The strings a regex of the form `(a|b|c)` / `(?:a|b)` / `a|b` matches, unescaped.

    Raises ValueError for anything else (classes, repetition, nesting): the dev server
    constrains decoding to a finite set of strings, not to arbitrary regular languages.
    """
    body = regex
    for opening in ("(?:", "("):
        if body.startswith(opening) and body.endswith(")") and _closes_at_end(body, len(opening)):
            body = body[len(opening) : -1]
            break
    alternatives: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body):
                raise ValueError("the regex ends with a lone backslash")
            escaped = body[i + 1]
            if escaped.isalnum():
                raise ValueError(f"\\{escaped} is a character class, not a literal")
            current.append(escaped)
            i += 2
            continue
        if char == "|":
            alternatives.append("".join(current))
            current = []
        elif char in _SPECIAL:
            raise ValueError(f"'{char}' at position {i} is regex syntax, not a literal")
        else:
            current.append(char)
        i += 1
    alternatives.append("".join(current))
    if any(not a for a in alternatives):
        raise ValueError("an alternative is empty")
    return alternatives


def _closes_at_end(text: str, start: int) -> bool:
    """Whether the group opened just before `start` closes at the last character."""
    depth = 1
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
        i += 1
    return False
