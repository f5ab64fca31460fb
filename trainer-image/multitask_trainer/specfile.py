"""Load the MultiTaskModel spec a trainer step runs with.

`--spec FILE` is a MultiTaskModel YAML; a relative `baseModel.path` and relative local data paths
resolve against the folder of that file. prepare stores the resolved spec in the workspace
(`spec.json`), so later steps need only `--workspace`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.datafiles import parse_location
from multitask_operator.loader import load_file
from multitask_operator.workspace import Workspace

from .errors import TrainerError


def _resolved(spec: MultiTaskModelSpec, base_dir: Path) -> MultiTaskModelSpec:
    """The spec with local paths made absolute, so that it means the same from any folder."""
    data = spec.to_wire()
    path = data["baseModel"].get("path")
    if path and not Path(path).expanduser().is_absolute():
        data["baseModel"]["path"] = str((base_dir / Path(path).expanduser()).resolve())
    for task in data["tasks"]:
        for split in ("train", "eval"):
            value = task["data"].get(split)
            if value is None:
                continue
            where = parse_location(value, base_dir)
            if where.is_local:
                task["data"][split] = str(where.file.resolve())
    return MultiTaskModelSpec.model_validate(data)


def load_spec_file(path: str | Path) -> MultiTaskModelSpec:
    result = load_file(path)
    if result.problems:
        raise TrainerError("\n".join(str(p) for p in result.problems))
    if len(result.documents) != 1:
        raise TrainerError(
            f"{path}: holds {len(result.documents)} MultiTaskModel documents; the trainer "
            "needs exactly one"
        )
    doc = result.documents[0]
    return _resolved(doc.model.spec, doc.base_dir)


def spec_digest(spec: MultiTaskModelSpec) -> str:
    """A short hash of the spec, stored with finished work to notice a changed spec."""
    text = json.dumps(spec.to_wire(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_spec(workspace: Workspace, spec_path: str | Path | None) -> MultiTaskModelSpec:
    """The spec from `--spec` if given, else the one prepare stored in the workspace."""
    if spec_path is not None:
        return load_spec_file(spec_path)
    if not workspace.spec_file.is_file():
        raise TrainerError(
            f"{workspace.spec_file}: not found; run the prepare step first or pass --spec FILE"
        )
    return MultiTaskModelSpec.model_validate(json.loads(workspace.spec_file.read_text()))
