"""Read MultiTaskModel YAML files and turn every problem into one sentence with a location.

    problems look like:  model.yaml:23: spec.tasks[2].metric: 'rouge_l' does not fit a
                         classification task; accepted: accuracy or macro_f1

YAML is composed into nodes first so that a pydantic error's field path can be mapped back to
the line it came from. Data files named by the spec are checked when they are local.

Whatever the file holds, it gets one line per problem, never a traceback: files over
MAX_SPEC_BYTES (1 MiB, the order of the API server's own limit on an object) are refused before
parsing, bytes that are not UTF-8 are reported with their offset, nesting is bounded, a key
given twice in one mapping is refused naming both lines (YAML would keep the last silently),
and every value echoed in a message is cut to 80 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from .api.common import DNS1123_LABEL, shown
from .api.crd import structural_schema
from .api.resource import API_VERSION, KIND, MultiTaskModel
from .api.spec import MultiTaskModelSpec
from .datafiles import DataError, check_task_examples, infer_labels, parse_location, read_examples
from .planner import eval_split_size

Loc = Sequence[str | int]
MAX_SPEC_BYTES = 1 << 20
MAX_YAML_DEPTH = 64
MAX_MESSAGE = 600  # characters of one problem's message (a list of what is accepted included)


class SpecFileError(yaml.MarkedYAMLError):
    """A well-formed YAML file that no MultiTaskModel file can be (too deep, a duplicate key)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounded nesting and no duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecFileError(problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                                    problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = key.start_mark.line + 1
            first = seen.setdefault((key.tag, key.value), line)
            if first != line:
                raise SpecFileError(
                    problem=f"key {shown(key.value)} appears twice in one mapping (lines "
                    f"{first} and {line}); YAML would keep only the last",
                    problem_mark=key.start_mark,
                )
        return node


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
        message = self.message
        if len(message) > MAX_MESSAGE:
            message = f"{message[:MAX_MESSAGE]}... ({len(message)} characters)"
        parts.append(message)
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


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,79}$")


def format_path(loc: Loc) -> str:
    """`spec.tasks[2].data`; a key that is not a plain name (a user's typo can be anything,
    newlines included) is quoted and cut, so that a problem stays one line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part[:80])}]"
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


def _message(error: ErrorDetails, loc: list[str | int]) -> str:
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
            f"{shown(value)} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if kind == "enum":
        return f"{shown(value)} is not accepted; accepted: {ctx.get('expected')}"
    message = error["msg"].removeprefix("Value error, ")
    message = message.replace("Input should be", "must be")
    if kind not in ("value_error", "assertion_error") and not isinstance(value, dict | list):
        message += f", got {shown(value)}"
    return message


def validation_problems(
    err: ValidationError, file: str, node: yaml.Node | None, prefix: Loc = ()
) -> list[Problem]:
    problems = []
    for error in err.errors():
        loc = list(prefix) + list(error["loc"])
        if error["type"] == "mtm_field":
            loc += [int(p) if p.isdigit() else p for p in error["ctx"]["field"].split(".")]
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
                f"must be {API_VERSION}, got {shown(data.get('apiVersion'))}",
            )
        )
    if data.get("kind") != KIND:
        problems.append(
            Problem(
                file, locate(node, ["kind"]), "kind",
                f"must be {KIND}, got {shown(data.get('kind'))}",
            )
        )
    return problems


def load_file(path: str | Path) -> LoadResult:
    """Every MultiTaskModel in a (multi-document) YAML file, and every problem found."""
    path = Path(path)
    result = LoadResult()
    name = str(path)
    text = _read_text(path, result)
    if text is None:
        return result
    loader: _Loader | None = None
    index = 0
    try:
        loader = _Loader(text)  # checks that every character is one YAML allows
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            index += 1
            if data is None:
                continue  # an empty document (a trailing `---`), as kubectl skips it
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
    except SpecFileError as err:
        line = err.problem_mark.line + 1 if err.problem_mark else None
        result.problems.append(Problem(name, line, None, str(err.problem)))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        result.problems.append(Problem(name, line, None, f"YAML syntax error: {err.problem}"))
    except yaml.reader.ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        result.problems.append(Problem(
            name, line, None,
            f"character #x{err.character:04x} at offset {err.position} is not allowed in YAML",
        ))
    finally:
        if loader is not None:
            loader.dispose()
    if not result.documents and not result.problems:
        result.problems.append(Problem(name, None, None, "no MultiTaskModel in the file (it holds "
                                       "no document, or only empty ones)"))
    return result


def _read_text(path: Path, result: LoadResult) -> str | None:
    """The file as text, or None with the problem recorded."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            result.problems.append(Problem(
                name, None, None, f"the file is {size} bytes; a MultiTaskModel file may be at "
                f"most {MAX_SPEC_BYTES} bytes (1 MiB, about what the Kubernetes API server "
                "accepts for one object)"))
            return None
        data = path.read_bytes()
    except OSError as err:
        result.problems.append(Problem(name, None, None, f"cannot read: {err.strerror}"))
        return None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        result.problems.append(Problem(
            name, line, None, f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset "
            f"{err.start}; save the file as UTF-8"))
        return None


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
            loc: list[str | int] = ["spec", "tasks", i, "data", split]
            where = parse_location(value, doc.base_dir)
            if not where.is_local:
                summary.remote.setdefault(task.name, value)
                continue
            try:
                examples = read_examples(where.file, task)
                if split == "train":
                    check_task_examples(task, where.file, examples)
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
