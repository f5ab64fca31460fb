"""values.yaml is documented everywhere and values.schema.json turns bad values into clear errors.

    .venv/bin/python -m pytest tests/chart/test_chart_values.py -q
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from .tools import CHART, VALUE_SETS, helm, load_values, merge_values

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES_TEXT = (CHART / "values.yaml").read_text()
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][\w.-]*):(?P<rest>.*)$")


def test_defaults_and_every_value_set_satisfy_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    defaults = yaml.safe_load(VALUES_TEXT)
    jsonschema.validate(defaults, SCHEMA)
    for value_set in VALUE_SETS:
        jsonschema.validate(merge_values(defaults, load_values(value_set)), SCHEMA)


def _documented_keys() -> list[tuple[str, bool, bool]]:
    """(path, has a `# --` comment, the comment block gives an example) for every key whose
    parent is the root or a group (a mapping without its own `# --` comment)."""
    found = []
    stack: list[tuple[int, str, bool]] = []  # (indent, path, is_group)
    comment: list[str] = []
    for line in VALUES_TEXT.splitlines():
        if line.lstrip().startswith("#"):
            comment.append(line.strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            comment = [] if not line.strip() else comment
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        parent_is_group = not stack or stack[-1][2]
        block = "\n".join(comment)
        documented = "# --" in block
        path = ".".join([p for _, p, _ in stack[-1:]] + [match["key"]])
        if parent_is_group:
            found.append((path, documented, "Example" in block))
        is_group = parent_is_group and not documented and match["rest"].strip() == ""
        stack.append((indent, path, is_group))
        comment = []
    return found


def test_every_value_has_a_comment_and_an_example() -> None:
    keys = _documented_keys()
    groups = {"image", "operatorConfig", "operatorConfig.images", "operatorConfig.workspace",
              "serviceAccount", "rbac", "metrics", "metrics.service", "metrics.serviceMonitor"}
    assert len(keys) > 30, "the values.yaml parser found too few keys"
    undocumented = [path for path, documented, _ in keys if not documented and path not in groups]
    assert not undocumented, f"values without a `# --` comment: {undocumented}"
    without_example = [path for path, documented, example in keys if documented and not example]
    assert not without_example, f"values without an Example in their comment: {without_example}"


def test_every_value_is_in_the_schema() -> None:
    def walk(values: dict, schema: dict, path: str) -> None:
        for key, value in values.items():
            assert key in schema.get("properties", {}), f"{path}{key} is not in values.schema.json"
            if isinstance(value, dict) and schema["properties"][key].get("properties"):
                walk(value, schema["properties"][key], f"{path}{key}.")

    walk(yaml.safe_load(VALUES_TEXT), SCHEMA, "")


# (values, what helm's error must name): one value wrong at a time.
BAD_VALUES = [
    ({"replicaCount": 0}, "/replicaCount"),
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"replicas": 2}, "'replicas' not allowed"),
    ({"watchNamespaces": "ml"}, "/watchNamespaces"),
    ({"watchNamespaces": ["ML_Team"]}, "/watchNamespaces/0"),
    ({"watchNamespaces": ["ml", "ml"]}, "/watchNamespaces"),
    ({"image": {"pullPolicy": "always"}}, "/image/pullPolicy"),
    ({"operatorConfig": {"images": {"trainr": "x:1"}}}, "'trainr' not allowed"),
    ({"operatorConfig": {"images": {"tgi": ""}}}, "/operatorConfig/images/tgi"),
    ({"operatorConfig": {"workspace": {"accessMode": "ReadWriteAll"}}},
     "/operatorConfig/workspace/accessMode"),
    ({"metrics": {"service": {"port": 70000}}}, "/metrics/service/port"),
    ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
     "/metrics/serviceMonitor/interval"),
    ({"securityContext": {"readOnlyRootFilesystem": "yes"}},
     "/securityContext/readOnlyRootFilesystem"),
    ({"securityContext": {"capabilites": {"drop": ["ALL"]}}}, "'capabilites' not allowed"),
    ({"tolerations": [{"key": "a", "effect": "NoWhere"}]}, "/tolerations/0/effect"),
    ({"resources": {"requests": {"cpu": "lots"}}}, "/resources/requests/cpu"),
    ({"rbac": {"create": "false"}}, "/rbac/create"),
    ({"extraEnv": [{"value": "no name"}]}, "/extraEnv/0"),
    ({"peeringName": "Leader!"}, "/peeringName"),
]


@pytest.mark.parametrize(("values", "names"), BAD_VALUES, ids=[n for _, n in BAD_VALUES])
def test_helm_rejects_bad_values_naming_the_field(values: dict, names: str, tmp_path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = helm("template", "mto", str(CHART), "--values", str(values_file), check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert names in result.stderr, result.stderr


def test_service_account_name_is_required_when_not_created() -> None:
    result = helm("template", "mto", str(CHART), "--set", "serviceAccount.create=false",
                  check=False)
    assert result.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in result.stderr
