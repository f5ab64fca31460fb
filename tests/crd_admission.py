"""What the API server does with a MultiTaskModel at `kubectl apply`, emulated from the CRD:
defaulting, OpenAPI v3 schema validation, list-type uniqueness and the CEL rules.

No kube-apiserver can run in tests; this lets tests show that the committed CRD accepts and
rejects the same objects as the pydantic models. CEL runs on cel-python; OpenAPI v3.0 schemas
are Draft 4 JSON Schema plus `nullable`, which `_to_draft4` turns into a type union.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
CRD_FILE = REPO / "crds" / "multitaskmodels.yaml"


def load_crd(path: Path = CRD_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def root_schema(crd: dict[str, Any]) -> dict[str, Any]:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting: missing properties with a default are set, recursively."""
    obj = copy.deepcopy(obj)

    def walk(node: dict[str, Any], value: Any) -> None:
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    walk(sub, value[name])
            if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
                for item in value.values():
                    walk(node["additionalProperties"], item)
        elif isinstance(value, list) and "items" in node:
            for item in value:
                walk(node["items"], item)

    walk(schema, obj)
    return obj


def _to_draft4(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_draft4(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_draft4(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if "properties" in node:
        out["properties"] = {k: _to_draft4(v) for k, v in node["properties"].items()}
    if node.get("nullable"):
        out.pop("nullable")
        out["type"] = [node["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _instances(node: dict[str, Any], value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    """Every (schema node, value, path) pair in the object, depth first."""
    yield node, value, path
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value and value[name] is not None:
                yield from _instances(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            yield from _instances(node["items"], item, f"{path}[{i}]")


_ENV = celpy.Environment()


def admission_errors(obj: dict[str, Any], crd: dict[str, Any] | None = None) -> list[str]:
    """Why the API server would reject `obj` (empty when it would accept it), with the
    strict field validation that kubectl asks for by default since Kubernetes 1.27 (unknown
    fields are errors rather than silently pruned)."""
    schema = root_schema(crd or load_crd())
    obj = apply_defaults(schema, obj)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(_to_draft4(schema)).iter_errors(obj)
    ]
    if errors:  # the API server runs CEL only on schema-valid objects
        return errors
    for node, value, path in _instances(schema, obj, "self"):
        if isinstance(value, dict) and "properties" in node:
            for name in sorted(set(value) - set(node["properties"])):
                errors.append(f"{path}.{name}: unknown field")
        if node.get("x-kubernetes-list-type") in ("set", "map") and isinstance(value, list):
            keys = node.get("x-kubernetes-list-map-keys")
            seen = [tuple(v.get(k) for k in keys) if keys else v for v in value]
            if len(seen) != len({repr(s) for s in seen}):
                errors.append(
                    f"{path}: duplicate entries in a list of type {node['x-kubernetes-list-type']}"
                )
        for rule in node.get("x-kubernetes-validations", []):
            program = _ENV.program(_ENV.compile(rule["rule"]))
            if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
                errors.append(f"{path}: {rule['message']}")
    return errors


def status_errors(status: dict[str, Any], crd: dict[str, Any] | None = None) -> list[str]:
    """Why the API server would drop or refuse part of a status the operator writes: types and
    formats against the CRD's status schema, and every field the schema does not know (the API
    server prunes those silently, so a mistyped key would never reach `kubectl get`)."""
    schema = root_schema(crd or load_crd())["properties"]["status"]
    errors = [
        f"status.{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft4Validator(_to_draft4(schema)).iter_errors(status)
    ]
    for node, value, path in _instances(schema, status, "status"):
        if (isinstance(value, dict) and "properties" in node
                and not node.get("x-kubernetes-preserve-unknown-fields")):
            errors += [f"{path}.{name}: unknown field, pruned by the API server"
                       for name in sorted(set(value) - set(node["properties"]))]
    return errors
