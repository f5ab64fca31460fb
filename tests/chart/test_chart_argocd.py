"""charts/argocd/application.yaml: the two Argo CD Applications point at real things that work.

    .venv/bin/python -m pytest tests/chart/test_chart_argocd.py -q

There is no Argo CD here; what is checked is what would break a sync: paths that do not exist,
chart values the schema rejects, models that are invalid, and the options that order CRD
before custom resources.
"""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest
import yaml
from multitask_operator.api.resource import MultiTaskModel

from tests.conftest import REPO

from .tools import ARGOCD, CHART, KUBE_VERSION, helm, merge_values, parse_manifests

APPLICATIONS = {
    app["metadata"]["name"]: app
    for app in parse_manifests((ARGOCD / "application.yaml").read_text())
}
OPERATOR_APP = APPLICATIONS["multitask-operator"]
MODELS_APP = APPLICATIONS["multitask-models"]


def test_both_applications_are_well_formed() -> None:
    assert set(APPLICATIONS) == {"multitask-operator", "multitask-models"}
    for app in APPLICATIONS.values():
        assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
        assert app["metadata"]["namespace"] == "argocd"
        assert set(app["spec"]) <= {"project", "source", "destination", "syncPolicy"}
        assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
        assert (REPO / app["spec"]["source"]["path"]).is_dir(), app["spec"]["source"]["path"]


def test_operator_application_installs_the_chart_with_valid_values(tmp_path) -> None:
    source = OPERATOR_APP["spec"]["source"]
    assert REPO / source["path"] == CHART
    assert source["helm"]["skipCrds"] is False, "Argo CD must apply (and upgrade) the CRDs"
    values = source["helm"]["valuesObject"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(merge_values(defaults, values), json.loads((CHART / "values.schema.json")
                                                             .read_text()))
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    rendered = helm("template", source["helm"]["releaseName"], str(CHART), "--include-crds",
                    "-n", OPERATOR_APP["spec"]["destination"]["namespace"],
                    "--kube-version", KUBE_VERSION, "--values", str(values_file))
    kinds = [obj["kind"] for obj in parse_manifests(rendered.stdout)]
    assert kinds.count("CustomResourceDefinition") == 3 and "Deployment" in kinds
    options = OPERATOR_APP["spec"]["syncPolicy"]["syncOptions"]
    assert {"CreateNamespace=true", "ServerSideApply=true"} <= set(options)


def test_models_application_syncs_valid_models_after_the_operator() -> None:
    source = MODELS_APP["spec"]["source"]
    files = sorted((REPO / source["path"]).glob(source["directory"]["include"]))
    assert files, f"{source['path']} has no {source['directory']['include']}"
    for path in files:
        for obj in parse_manifests(path.read_text()):
            MultiTaskModel.model_validate(obj)
            assert obj["metadata"].get("namespace"), f"{path.name}: a model must name its namespace"
    sync = MODELS_APP["spec"]["syncPolicy"]
    # The CRD comes from the other Application: without this the dry run fails until it exists.
    assert "SkipDryRunOnMissingResource=true" in sync["syncOptions"]
    assert sync["retry"]["limit"] > 0
    wave = int(MODELS_APP["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
    assert wave > int(OPERATOR_APP["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])


@pytest.mark.parametrize("name", sorted(APPLICATIONS))
def test_destination_namespaces_are_valid_names(name: str) -> None:
    namespace = APPLICATIONS[name]["spec"]["destination"]["namespace"]
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        KUBE_VERSION, strict=True,
    )
