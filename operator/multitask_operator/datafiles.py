"""Task data: where it lives and what a valid file is. Pure Python, no torch.

Task data is JSON Lines, one example per line: {"input": "...", "output": "..."}; for a
classification task `output` is one of the labels. `mtm validate`, `mtm plan` and the trainer's
prepare step all read local files through `read_examples`, so a bad line is reported the same
way everywhere: `FILE:LINE: what is wrong; what is accepted`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .api.common import TaskType, listed, shown
from .api.spec import Task

MAX_REPORTED = 5  # problems listed per file before "... and N more"


@dataclass(frozen=True)
class DataProblem:
    file: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        return f"{where}: {self.message}"


class DataError(ValueError):
    """One or more problems with a task's data, one sentence each."""

    def __init__(self, problems: list[DataProblem]):
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True)
class Location:
    kind: str  # local | pvc | http | s3 | hf
    value: str  # as written in the spec
    path: Path | None = None  # resolved file, for kind local

    @property
    def is_local(self) -> bool:
        return self.kind == "local"

    @property
    def file(self) -> Path:
        """The resolved file of a local location."""
        if self.path is None:
            raise ValueError(f"{self.value} is a {self.kind} location, not a local file")
        return self.path


def parse_location(value: str, base_dir: Path | None = None) -> Location:
    """Classify a data location. Relative local paths resolve against `base_dir` (the folder of
    the YAML file that names them)."""
    for prefix, kind in (
        ("pvc://", "pvc"),
        ("http://", "http"),
        ("https://", "http"),
        ("s3://", "s3"),
        ("hf://datasets/", "hf"),
    ):
        if value.startswith(prefix):
            return Location(kind=kind, value=value)
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return Location(kind="local", value=value, path=path)


@dataclass(frozen=True)
class Example:
    input: str
    output: str
    line: int


def _line_problem(record: object, labels: set[str] | None) -> str | None:
    if not isinstance(record, dict):
        kind = type(record).__name__
        return f"expected a JSON object with string fields input and output, got a {kind}"
    for key in ("input", "output"):
        if key not in record:
            return f"missing field '{key}'; each line needs string fields input and output"
        if not isinstance(record[key], str):
            kind = type(record[key]).__name__
            return f"field '{key}' must be a string, got {kind}"
    if not record["output"].strip():
        return "output is empty"
    if labels is not None and record["output"] not in labels:
        return (f"output {shown(record['output'])} is not a label; accepted: "
                f"{listed(sorted(labels))}")
    return None


MAX_INT_DIGITS = 4300  # Python's default int-from-string limit


def _bounded_int(text: str) -> int:
    """An integer of a JSON line, refused past MAX_INT_DIGITS digits by this loader itself:
    the interpreter's limit is process-wide and anything in the process may lift it."""
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {digits} digits (at most {MAX_INT_DIGITS} digits)")
    return int(text)


def read_examples(path: str | Path, task: Task | None = None) -> list[Example]:
    """All examples of a JSON Lines file; raises DataError naming FILE:LINE for bad lines.

    Blank lines are skipped. With a classification `task` that declares labels, every output
    must be one of them."""
    path = Path(path)
    labels = set(task.labels) if task is not None and task.labels is not None else None
    if not path.exists():
        raise DataError([DataProblem(path, None, "file not found")])
    if not path.is_file():
        raise DataError([DataProblem(path, None, "not a file")])
    examples: list[Example] = []
    problems: list[DataProblem] = []
    bad = 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                problem: str | None = f"not UTF-8 text ({err.reason} at byte {err.start})"
            else:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line, parse_int=_bounded_int)
                except json.JSONDecodeError as err:
                    problem = f"not valid JSON: {err.msg} at column {err.colno}"
                except RecursionError:
                    problem = "not usable JSON: nested too deeply"
                except ValueError as err:  # e.g. _bounded_int's
                    problem = f"not usable JSON: {str(err)[:120]}"
                else:
                    problem = _line_problem(record, labels)
                    if problem is None:
                        examples.append(Example(record["input"], record["output"], number))
                        continue
            bad += 1
            if len(problems) < MAX_REPORTED:
                problems.append(DataProblem(path, number, str(problem)))
    if bad > MAX_REPORTED:
        problems.append(DataProblem(path, None, f"... and {bad - MAX_REPORTED} more bad lines"))
    if not problems and not examples:
        problems.append(DataProblem(path, None, "no examples (the file is empty)"))
    if problems:
        raise DataError(problems)
    return examples


def infer_labels(examples: list[Example]) -> list[str]:
    return sorted({e.output for e in examples})


def check_task_examples(task: Task, path: Path, examples: list[Example]) -> None:
    """Task-level checks once every line is valid: a classification task needs two labels."""
    if task.type != TaskType.CLASSIFICATION or task.labels is not None:
        return
    labels = infer_labels(examples)
    if len(labels) < 2:
        raise DataError(
            [
                DataProblem(
                    path,
                    None,
                    f"task {task.name} is classification but its data has only {len(labels)} "
                    f"distinct output ({listed(map(shown, labels))}); it needs at least 2 labels",
                )
            ]
        )


def fingerprint_changes(before: dict[str, dict[str, str]],
                        after: dict[str, dict[str, str]]) -> list[str]:
    """`task NAME data.SPLIT` for every data location whose fingerprint differs."""
    out = []
    for task in sorted(set(before) | set(after)):
        old, new = before.get(task, {}), after.get(task, {})
        out += [f"task {task} data.{split}" for split in sorted(set(old) | set(new))
                if old.get(split) != new.get(split)]
    return out
