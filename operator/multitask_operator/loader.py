"""Read MultiTaskModel YAML files and turn every problem into one sentence with a location.

    problems look like:  model.yaml:23: spec.tasks[2].metric: 'rouge_l' does not fit a
                         classification task; accepted: accuracy or macro_f1

YAML is composed into nodes first so that a pydantic error's field path can be mapped back to
the line it came from. Data files named by the spec are checked when they are local.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api.common import DNS1123_LABEL
from .api.crd import structural_schema
from .api.resource import API_VERSION, KIND, MultiTaskModel
from .api.spec import MultiTaskModelSpec
from .datafiles import DataError, check_task_examples, infer_labels, parse_location, read_examples
from .planner import eval_split_size

Loc = Sequence[str | int]


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str | None
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


@dataclass
class Document:
    """One valid MultiTaskModel from a file."""

    file: Path
    index: int  # 1-based document number in the file
    model: MultiTaskModel
    node: yaml.Node

    @property
    def base_dir(self) -> Path:
        return self.file.parent

    def line_of(self, loc: Loc) -> int | None:
        return locate(self.node, loc)


@dataclass
class LoadResult:
    documents: list[Document] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def locate(node: yaml.Node | None, loc: Loc) -> int | None:
    """1-based line of the deepest node along `loc` that exists in the YAML."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key, value in node.value:
                if getattr(key, "value", None) == part:
                    child = value
                    line = key.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(node.value):
                child = node.value[part]
                line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


@cache
def _spec_schema() -> dict[str, Any]:
    return structural_schema(MultiTaskModelSpec)


def _schema_at(loc: Loc) -> dict[str, Any] | None:
    """The CRD schema of the spec at `loc` (which starts with 'spec')."""
    node: dict[str, Any] | None = _spec_schema()
    for part in loc[1:]:
        if node is None:
            return None
        if isinstance(part, int):
            node = node.get("items")
        else:
            node = node.get("properties", {}).get(part)
    return node


def _message(error: dict[str, Any], loc: list[str | int]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "mtm_field":
        return ctx["message"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        parent = _schema_at(loc[:-1]) if loc and loc[0] == "spec" else None
        fields = sorted((parent or {}).get("properties", {}))
        hint = f"; accepted here: {', '.join(fields)}" if fields else ""
        return f"unknown field{hint}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == DNS1123_LABEL:
        return (
            f"{value!r} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if kind == "enum":
        return f"{value!r} is not accepted; accepted: {ctx.get('expected')}"
    message = error["msg"].removeprefix("Value error, ")
    message = message.replace("Input should be", "must be")
    if kind not in ("value_error", "assertion_error") and not isinstance(value, dict | list):
        message += f", got {value!r}"
    return message


def validation_problems(
    err: ValidationError, file: str, node: yaml.Node | None, prefix: Loc = ()
) -> list[Problem]:
    problems = []
    for error in err.errors():
        loc = list(prefix) + list(error["loc"])
        if error["type"] == "mtm_field":
            loc += error["ctx"]["field"].split(".")
        problems.append(Problem(file, locate(node, loc), format_path(loc), _message(error, loc)))
    return sorted(problems, key=lambda p: p.line or 0)


def _check_header(data: dict[str, Any], file: str, node: yaml.Node) -> list[Problem]:
    problems = []
    if data.get("apiVersion") != API_VERSION:
        problems.append(
            Problem(
                file,
                locate(node, ["apiVersion"]),
                "apiVersion",
                f"must be {API_VERSION}, got {data.get('apiVersion')!r}",
            )
        )
    if data.get("kind") != KIND:
        problems.append(
            Problem(
                file, locate(node, ["kind"]), "kind", f"must be {KIND}, got {data.get('kind')!r}"
            )
        )
    return problems


def load_file(path: str | Path) -> LoadResult:
    """Every MultiTaskModel in a (multi-document) YAML file, and every problem found."""
    path = Path(path)
    result = LoadResult()
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        result.problems.append(Problem(name, None, None, f"cannot read: {err.strerror}"))
        return result
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            index += 1
            if data is None:
                continue
            if not isinstance(data, dict):
                result.problems.append(
                    Problem(
                        name,
                        node.start_mark.line + 1,
                        None,
                        f"document {index} is not a mapping (a Kubernetes object)",
                    )
                )
                continue
            header = _check_header(data, name, node)
            if header:
                result.problems.extend(header)
                continue
            try:
                model = MultiTaskModel.model_validate(data)
            except ValidationError as err:
                result.problems.extend(validation_problems(err, name, node))
                continue
            result.documents.append(Document(path, index, model, node))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        result.problems.append(Problem(name, line, None, f"YAML syntax error: {err.problem}"))
    finally:
        loader.dispose()
    if index == 0 and not result.problems:
        result.problems.append(Problem(name, None, None, "no MultiTaskModel in the file"))
    return result


@dataclass
class DataSummary:
    """What the local data of a document holds: counts after the eval split, inferred labels."""

    counts: dict[str, int] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    remote: dict[str, str] = field(default_factory=dict)  # task -> location not checked here
    problems: list[Problem] = field(default_factory=list)


def check_data(doc: Document) -> DataSummary:
    """Read every local data file of the document; remote ones are listed, not fetched."""
    summary = DataSummary()
    for i, task in enumerate(doc.model.spec.tasks):
        sizes: dict[str, int] = {}
        for split in ("train", "eval"):
            value = getattr(task.data, split)
            if value is None:
                continue
            loc = ["spec", "tasks", i, "data", split]
            where = parse_location(value, doc.base_dir)
            if not where.is_local:
                summary.remote.setdefault(task.name, value)
                continue
            try:
                examples = read_examples(where.path, task)
                if split == "train":
                    check_task_examples(task, where.path, examples)
                    summary.labels[task.name] = task.labels or infer_labels(examples)
            except DataError as err:
                for p in err.problems:
                    summary.problems.append(
                        Problem(str(p.file), p.line, format_path(loc), p.message)
                    )
                continue
            sizes[split] = len(examples)
        if "train" in sizes and task.name not in summary.remote:
            total = sizes["train"]
            held_out = 0 if task.data.eval else eval_split_size(total, task.data.eval_fraction)
            summary.counts[task.name] = total - held_out
    return summary
