"""Generate the MultiTaskModel CustomResourceDefinition from the pydantic models.

`make crds` writes it to crds/multitaskmodels.yaml; `mtm crd` prints it. Pydantic emits JSON
Schema 2020-12; the API server wants a *structural* OpenAPI v3 schema. The differences this
module bridges (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#specifying-a-structural-schema):
- no `$ref`: definitions are inlined;
- optional fields are `nullable: true`, not `anyOf: [X, {type: null}]`;
- `const` becomes a one-value `enum`; numeric `exclusiveMinimum: x` becomes
  `minimum: x` + `exclusiveMinimum: true` (OpenAPI v3.0 semantics);
- no `title`, no `examples` (one `example` instead), no `additionalProperties: false` (the API
  server prunes unknown fields), no `default: null`.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from .resource import GROUP, KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from .spec import MultiTaskModelSpec
from .status import MultiTaskModelStatus

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Tasks", "type": "integer", "jsonPath": ".status.taskCount"},
    {"name": "Qualified", "type": "integer", "jsonPath": ".status.qualifiedCount"},
    {"name": "Cost saving", "type": "string", "jsonPath": ".status.serving.costSaving"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]

_DROP = {"title", "$defs", "discriminator"}


class SchemaError(ValueError):
    """The models produce a schema construct that a structural CRD schema cannot express."""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline a `$ref` (or a single-element allOf of one), keeping sibling keywords."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**copy.deepcopy(target), **siblings}
    return node


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = _resolve(node, defs)

    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"]]
        non_null = [o for o in options if o.get("type") != "null"]
        if len(non_null) != 1:
            raise SchemaError(f"a union of several types cannot be structural: {node['anyOf']}")
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        node = {**non_null[0], **outer}
        if len(options) > len(non_null):
            node["nullable"] = True

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            if value is False:
                continue
            out[key] = _structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "examples":
            out["example"] = value[0]
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, aliases as field names."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    _describe_entries(schema)
    return schema


def _describe_entries(node: dict[str, Any]) -> None:
    """The entries of a list or map without a description of their own (strings, numbers)
    take their container's, so that `kubectl explain` says something on every node."""
    first = str(node.get("description", "")).split(". ")[0].rstrip(".")
    for key, what in (("items", "An entry"), ("additionalProperties", "A value")):
        child = node.get(key)
        if isinstance(child, dict):
            if "description" not in child and first:
                child["description"] = f"{what} of: {first}."
            _describe_entries(child)
    for child in (node.get("properties") or {}).values():
        _describe_entries(child)


def build_crd() -> dict[str, Any]:
    spec_schema = structural_schema(MultiTaskModelSpec)
    spec_schema["description"] = (
        "The tasks served today and the multi-task recipe that replaces their models with one."
    )
    status_schema = structural_schema(MultiTaskModelStatus)
    status_schema["description"] = "What the operator observed. Written by the operator only."
    root = {
        "type": "object",
        "description": (
            "MultiTaskModel trains one multi-task LLM for many NLP tasks (arXiv 2411.03644), "
            "serves it with one inference Deployment and moves the qualified tasks onto it."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": (
                "The versioned schema of this object: multitask.ai/v1alpha1.")},
            "kind": {"type": "string", "description": "MultiTaskModel."},
            "metadata": {"type": "object", "description": (
                "Standard object metadata; the name is at most "
                f"{MAX_NAME_LENGTH} characters.")},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters: "
                "the names of the Jobs and Services made for it add a suffix",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["ml"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from multitask_operator.api; do not edit.\n"


def render_crd_yaml() -> str:
    text: str = yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)
    return HEADER + text
