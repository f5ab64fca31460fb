"""The chart's RBAC grants exactly what operator/multitask_operator/rbac.py says the operator calls.

    .venv/bin/python -m pytest tests/chart/test_chart_rbac.py -q

Both ways: a permission the operator needs and the chart lacks fails, and so does one the
chart grants that the operator never uses. Wildcards fail outright.
"""

from __future__ import annotations

import pytest
from multitask_operator import rbac

from .tools import (
    CHART,
    RELEASE_NAMESPACE,
    VALUE_SETS,
    by_kind,
    helm,
    load_values,
    parse_manifests,
    render,
)

Grants = dict[str | None, set[rbac.Permission]]


def _rules_as_permissions(rules: list[dict]) -> set[rbac.Permission]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def effective_grants(objects: list[dict], service_account: str) -> Grants:
    """What the ServiceAccount may do, from the rendered Roles and bindings: None is
    cluster-wide, a namespace name is that namespace only."""
    cluster_roles = {r["metadata"]["name"]: r for r in by_kind(objects, "ClusterRole")}
    roles = {
        (r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")
    }
    subject = {"kind": "ServiceAccount", "name": service_account, "namespace": RELEASE_NAMESPACE}
    grants: Grants = {}
    for binding in by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [subject], f"{binding['metadata']['name']} binds others"
        scope = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = (cluster_roles[ref["name"]] if ref["kind"] == "ClusterRole"
                else roles[(scope, ref["name"])])
        grants.setdefault(scope, set()).update(_rules_as_permissions(role["rules"]))
    bound = {b["roleRef"]["name"] for b in by_kind(objects, "ClusterRoleBinding")}
    assert set(cluster_roles) <= bound | {None}, "a ClusterRole is rendered but never bound"
    return grants


def _describe(grants: Grants) -> str:
    return "\n".join(
        f"  {scope or 'cluster-wide'}: {group or 'core'}/{resource} {verb}"
        for scope, permissions in sorted(grants.items(), key=lambda kv: kv[0] or "")
        for group, resource, verb in sorted(permissions)
    )


def _difference(left: Grants, right: Grants) -> Grants:
    return {
        scope: left[scope] - right.get(scope, set())
        for scope in left
        if left[scope] - right.get(scope, set())
    }


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_rbac_equals_what_the_operator_calls(value_set: str) -> None:
    values = load_values(value_set)
    service_account = values.get("serviceAccount", {}).get("name") or "mto-multitask-operator"
    rbac_values = values.get("rbac", {})
    runtimes = [
        runtime
        for runtime, key in ((rbac.JOBSET, "jobset"), (rbac.KUBEFLOW, "kubeflowTrainer"))
        if rbac_values.get(key, True)
    ]
    # Namespace-scoped by default: the release's namespace, unless clusterWide is chosen.
    namespaces = values.get("watchNamespaces") or (
        [] if values.get("clusterWide") else [RELEASE_NAMESPACE])
    expected = rbac.permissions(
        namespaces,
        peering=values.get("replicaCount", 1) > 1,
        runtimes=runtimes,
    )
    rendered = effective_grants(render(value_set), service_account)
    missing, extra = _difference(expected, rendered), _difference(rendered, expected)
    assert not missing, f"{value_set}: the chart lacks operator calls:\n{_describe(missing)}"
    assert not extra, f"{value_set}: the chart grants calls never made:\n{_describe(extra)}"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_no_wildcards_and_no_secrets(value_set: str) -> None:
    objects = render(value_set)
    for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['metadata']['name']}: * in {key}"
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule
            # The HF token reaches training pods through secretKeyRef; the operator never reads it.
            assert "secrets" not in rule["resources"]
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_namespaced_install_keeps_workloads_out_of_the_cluster_role() -> None:
    objects = render("namespaced")
    cluster_rules = {
        resource
        for role in by_kind(objects, "ClusterRole")
        for rule in role["rules"]
        for resource in rule["resources"]
    }
    assert cluster_rules == {"customresourcedefinitions", "namespaces"}
    role_namespaces = sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role"))
    assert role_namespaces == ["ml", "ml-staging"]


def test_the_default_install_is_namespace_scoped_and_cluster_wide_is_explicit() -> None:
    objects = parse_manifests(helm("template", "mto", str(CHART), "-n", RELEASE_NAMESPACE).stdout)
    assert [r["metadata"]["namespace"] for r in by_kind(objects, "Role")] == [RELEASE_NAMESPACE]
    cluster_rules = {resource for role in by_kind(objects, "ClusterRole")
                     for rule in role["rules"] for resource in rule["resources"]}
    assert cluster_rules == {"customresourcedefinitions", "namespaces"}
    wide = parse_manifests(helm("template", "mto", str(CHART), "-n", RELEASE_NAMESPACE,
                                "--set", "clusterWide=true").stdout)
    assert not by_kind(wide, "Role")
    assert any("deployments" in rule["resources"] for role in by_kind(wide, "ClusterRole")
               for rule in role["rules"])
    both = helm("template", "mto", str(CHART), "-n", RELEASE_NAMESPACE, "--set",
                "clusterWide=true", "--set", "watchNamespaces={ml}", check=False)
    assert both.returncode != 0
    assert "set clusterWide: true (every namespace) or watchNamespaces" in both.stderr


def test_rbac_can_be_left_to_a_cluster_admin() -> None:
    rendered = helm("template", "mto", str(CHART), "-n", RELEASE_NAMESPACE,
                    "--set", "rbac.create=false", "--set", "watchNamespaces={ml}")
    kinds = {o["kind"] for o in parse_manifests(rendered.stdout)}
    assert "Deployment" in kinds
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & kinds


class TestPermissionsModule:
    """rbac.permissions() on its own: the rules that depend on mode, peering and runtimes."""

    def test_cluster_wide_grants_everything_through_one_cluster_role(self) -> None:
        grants = rbac.permissions()
        assert set(grants) == {None}
        assert ("batch", "jobs", "create") in grants[None]
        assert ("", "namespaces", "list") not in grants[None]

    def test_namespaced_grants_workloads_per_namespace_only(self) -> None:
        grants = rbac.permissions(["a", "b"])
        assert set(grants) == {None, "a", "b"}
        assert ("batch", "jobs", "create") not in grants[None]
        assert ("", "namespaces", "watch") in grants[None]
        assert grants["a"] == grants["b"]

    def test_peering_uses_the_object_that_matches_the_mode(self) -> None:
        assert ("kopf.dev", "clusterkopfpeerings", "patch") in rbac.permissions(peering=True)[None]
        namespaced = rbac.permissions(["a"], peering=True)
        assert ("kopf.dev", "kopfpeerings", "patch") in namespaced["a"]
        assert not any(r == "clusterkopfpeerings" for _, r, _ in namespaced[None])
        assert not any(g == "kopf.dev" for g, _, _ in rbac.permissions()[None])

    def test_runtimes_are_optional_and_checked(self) -> None:
        assert not any(g == "jobset.x-k8s.io" for g, _, _ in rbac.permissions(runtimes=())[None])
        with pytest.raises(ValueError, match="accepted: jobset, kubeflow"):
            rbac.permissions(runtimes=["ray"])

    def test_every_rule_says_why(self) -> None:
        for rule in rbac.RULES:
            assert rule.why.strip() and "*" not in rule.verbs + rule.resources
