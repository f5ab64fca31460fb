"""The one exception type the trainer reports to people (exit code 2, message on stderr and in
the termination log); anything else is a bug and keeps its traceback."""

from __future__ import annotations


class TrainerError(Exception):
    """Bad input: one sentence naming the task and FILE:LINE (or the field) and what is accepted."""
