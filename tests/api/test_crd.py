"""The generated CRD: in sync with the models, structural, valid, and agreeing with pydantic."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from multitask_operator.api import MultiTaskModel
from multitask_operator.api.crd import build_crd, render_crd_yaml
from pydantic import ValidationError

from tests.api.test_spec_validation import BAD_SPECS
from tests.conftest import MINIMAL_SPEC, REPO, manifest
from tests.crd_admission import CRD_FILE, admission_errors, load_crd, root_schema

K8S_VERSION = "1.35.0"
ALLOWED_AT_TOP = {"apiVersion", "kind", "metadata", "spec", "status"}


def test_committed_crd_is_generated_from_the_models():
    assert CRD_FILE.read_text() == render_crd_yaml(), (
        "crds/multitaskmodels.yaml is out of date: run `make crds`"
    )


def test_crd_is_valid_against_the_official_apiextensions_schema():
    kubernetes_validate.validate(load_crd(), K8S_VERSION, strict=True)


def _schema_nodes(node, path="openAPIV3Schema"):
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from _schema_nodes(sub, f"{path}.properties.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schema_nodes(node["items"], f"{path}.items")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}.additionalProperties")


def _jsonschemaprops_schema() -> dict:
    base = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = base / f"v{K8S_VERSION}-local-strict"
    return json.loads((folder / "jsonschemaprops-apiextensions-v1.json").read_text())


def test_every_schema_node_is_structural():
    """Rules of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
    custom-resource-definitions/#specifying-a-structural-schema, node by node."""
    props_schema = _jsonschemaprops_schema()
    # Each node alone (children checked in their own turn) against the official JSONSchemaProps.
    shallow = {**props_schema, "properties": dict.fromkeys(props_schema["properties"], {})}
    for name in ("type", "description", "pattern", "nullable", "format"):
        shallow["properties"][name] = props_schema["properties"][name]
    validator = jsonschema.Draft4Validator(shallow)
    problems = []
    for path, node in _schema_nodes(root_schema(load_crd())):
        for error in validator.iter_errors(node):
            problems.append(f"{path}: {error.message}")
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "const", "title", "examples"):
            if banned in node:
                problems.append(f"{path}: has {banned}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties false")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: both properties and additionalProperties")
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
            problems.append(f"{path}: numeric exclusiveMinimum")
        if node.get("x-kubernetes-list-type") == "map":
            required = set(node["items"].get("required", []))
            missing = set(node["x-kubernetes-list-map-keys"]) - required
            if missing:
                problems.append(f"{path}: list-map keys not required: {missing}")
    assert problems == []


def test_crd_names_columns_and_status_subresource():
    crd = build_crd()
    assert crd["metadata"]["name"] == "multitaskmodels.multitask.ai"
    assert crd["spec"]["names"]["shortNames"] == ["mtm"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:5] == ["Phase", "Tasks", "Qualified", "Cost saving", "Age"]
    # Every printer column points at a field the status schema actually has.
    status = root_schema(crd)["properties"]["status"]
    for column in version["additionalPrinterColumns"]:
        parts = column["jsonPath"].strip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = status
        for part in parts[1:]:
            node = node["properties"][part]
        assert node["type"] == column["type"] or column["type"] in ("date",), column


def test_descriptions_reach_kubectl_explain():
    spec = root_schema(build_crd())["properties"]["spec"]
    temperature = spec["properties"]["recipe"]["properties"]["stage2"]["properties"]["temperature"]
    assert "tau" in temperature["description"]
    assert temperature["minimum"] == 0 and temperature["exclusiveMinimum"] is True
    assert temperature["default"] == 2.0


# ----------------------------------------------------------------- admission vs pydantic


def _pydantic_ok(obj) -> bool:
    try:
        MultiTaskModel.model_validate(obj)
    except ValidationError:
        return False
    return True


def test_the_api_server_accepts_the_examples():
    for path in sorted([*(REPO / "examples").glob("*/model.yaml"),
                        REPO / "examples" / "local" / "smollm2.yaml"]):
        for doc in yaml.safe_load_all(path.read_text()):
            assert admission_errors(doc) == [], path


def test_the_api_server_accepts_a_minimal_object():
    assert admission_errors(manifest(json.loads(json.dumps(MINIMAL_SPEC)))) == []


@pytest.mark.parametrize(("mutate", "path", "fragment"), BAD_SPECS)
def test_crd_rejects_what_pydantic_rejects(mutate, path, fragment):
    obj = manifest(json.loads(json.dumps(MINIMAL_SPEC)))
    mutate(obj["spec"])
    assert not _pydantic_ok(obj)
    assert admission_errors(obj), f"the CRD accepts what pydantic rejects at {path}"


def test_name_length_rule_in_cel():
    obj = manifest(json.loads(json.dumps(MINIMAL_SPEC)), name="x" * 41)
    assert any("at most 40" in e for e in admission_errors(obj))
    assert not _pydantic_ok(obj)


def test_every_node_of_the_schema_is_explained():
    """`kubectl explain multitaskmodel.<any path>` says something everywhere: every node of
    the generated schema (objects, fields, list entries, map values) has a description."""
    schema = root_schema(load_crd())
    undescribed = []

    def walk(node: dict, path: str) -> None:
        if not node.get("description"):
            undescribed.append(path or "(root)")
        for name, child in (node.get("properties") or {}).items():
            walk(child, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            walk(node["additionalProperties"], f"{path}{{}}")

    walk(schema, "")
    assert undescribed == []
