"""Every Kubernetes API call the operator makes, as data: the source of truth for its RBAC.

The Helm chart writes its ClusterRole/Role rules out explicitly (a reviewer reads them there) and
`tests/chart/test_chart_rbac.py` renders the chart and compares the rules with `permissions()` both
ways: nothing the operator calls is missing, nothing it does not call is granted, no `*`.
Whoever adds an API call to the operator adds it here first, with the reason, then to
`charts/multitask-operator/templates/rbac.yaml`.

Kopf's own calls were read from kopf 1.45 (`kopf/_core`), not from its docs, which lag:
- events are posted through core/v1 only (`references.EVENTS`); events.k8s.io is never called;
- the main resource is listed, watched and merge-patched (finalizers and kopf's progress
  annotations on the object, status through the `/status` subresource); kopf never gets it;
- peering objects are listed, watched and patched (keepalives in their status); never created:
  the chart creates them. Without `--peering` the chart passes `--standalone`, and kopf then
  does not look at peerings at all (`peering.guess_selectors`);
- CRDs are listed and watched to notice new resources after start-up; namespaces are listed and
  watched only when the operator is limited to namespaces (`observation.namespace_observer` skips
  them cluster-wide, where it serves every namespace without knowing their names).

Pure data: no kopf or kubernetes import.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# When a rule applies (all conditions listed must hold). ALWAYS: every install. PEERING:
# replicas > 1, i.e. `--peering`. NAMESPACED_MODE / CLUSTER_MODE: `--namespace` given / not given;
# cluster-wide kopf peers through the cluster-scoped object, namespaced kopf through one object
# per namespace. The rest are optional
# training runtimes that the chart can leave out when the cluster has no such controller.
ALWAYS = "always"
PEERING = "peering"
NAMESPACED_MODE = "namespaced-mode"
CLUSTER_MODE = "cluster-mode"
JOBSET = "jobset"
KUBEFLOW = "kubeflow"
RUNTIMES = (JOBSET, KUBEFLOW)


@dataclass(frozen=True)
class Rule:
    """Verbs on resources of one API group. `cluster_scoped`: the resources are not namespaced."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    cluster_scoped: bool = False
    when: tuple[str, ...] = (ALWAYS,)


RULES: tuple[Rule, ...] = (
    # --- the custom resource ---------------------------------------------------------------
    Rule("multitask.ai", ("multitaskmodels",), ("list", "watch", "patch"),
         "kopf watches MultiTaskModels and patches finalizers and its progress annotations."),
    Rule("multitask.ai", ("multitaskmodels/status",), ("patch",),
         "phase, conditions, plan, per-task table and serving figures."),
    # The OwnerReferencesPermissionEnforcement admission plugin (on by default in OpenShift)
    # refuses an ownerReference with blockOwnerDeletion=true, which kopf.adopt() sets, unless
    # the creator may update the owner's finalizers.
    Rule("multitask.ai", ("multitaskmodels/finalizers",), ("update",),
         "owning Jobs, Deployments and PVCs (blockOwnerDeletion) under admission enforcement."),
    # --- what a model's lifecycle creates ------------------------------------------------------
    Rule("batch", ("jobs",), ("create", "get", "list", "watch", "delete"),
         "prepare/stage/evaluate/export Jobs: created once, watched to completion, deleted on "
         "retry."),
    Rule("", ("pods",), ("get", "list"),
         "Job results (the trainer's termination message) and the GPUs requested by the pods "
         "behind a per-task Service."),
    # The alternative, letting training pods write their progress to the API, would give pods
    # that run user data and code an API token with write access; reading is the lesser right.
    Rule("", ("pods/log",), ("get",),
         "progress: the last JSON progress lines of a running trainer pod, every 20 s."),
    Rule("", ("persistentvolumeclaims",), ("create", "get", "patch"),
         "the workspace claim when spec.training.workspace.claimName is unset; patched to grow."),
    Rule("apps", ("deployments",), ("create", "get", "list", "watch", "patch", "delete"),
         "inference and gateway Deployments: applied, watched until available, old revision "
         "removed."),
    Rule("", ("services",), ("create", "get", "patch", "delete"),
         "inference and gateway Services; per-task Services read, repointed on cutover and "
         "restored; the headless rendezvous Service of a runtime indexedJob stage."),
    Rule("", ("configmaps",), ("create", "get", "patch", "delete"),
         "the gateway's task table (instructions, labels, Host names)."),
    Rule("policy", ("poddisruptionbudgets",), ("create", "get", "patch", "delete"),
         "inference and gateway disruption budgets: applied, and the inference one deleted "
         "when the spec allows a single replica."),
    Rule("networking.k8s.io", ("networkpolicies",), ("create", "get", "patch", "delete"),
         "the inference pods' NetworkPolicy (only the gateway reaches them); deleted when the "
         "operator's config turns policies off."),
    Rule("autoscaling", ("horizontalpodautoscalers",), ("create", "get", "patch", "delete"),
         "spec.serving.autoscaling: inference (queue) and gateway (CPU) HPAs, applied, and "
         "deleted when autoscaling is turned off."),
    Rule("", ("events",), ("create",), "kopf posts an Event on every transition and failure."),
    # No watch: their child Jobs carry the model's labels, so the watch on Jobs wakes the model.
    # Whether the cluster serves them is read from API discovery, which needs no rule.
    Rule("jobset.x-k8s.io", ("jobsets",), ("create", "get", "list", "delete"),
         "multi-node training with spec.training.runtime: jobset: created once per stage, "
         "listed for their status, deleted on retry.", when=(JOBSET,)),
    Rule("trainer.kubeflow.org", ("trainjobs",), ("create", "get", "list", "delete"),
         "multi-node training with spec.training.runtime: kubeflow: created once per stage, "
         "listed for their status, deleted on retry.", when=(KUBEFLOW,)),
    # --- kopf itself -------------------------------------------------------------------------
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"),
         "kopf notices CRDs created or changed after it started.", cluster_scoped=True),
    Rule("", ("namespaces",), ("list", "watch"),
         "kopf resolves --namespace against the namespaces that exist.",
         cluster_scoped=True, when=(NAMESPACED_MODE,)),
    Rule("kopf.dev", ("clusterkopfpeerings",), ("list", "watch", "patch"),
         "leader election among replicas watching the whole cluster.",
         cluster_scoped=True, when=(PEERING, CLUSTER_MODE)),
    Rule("kopf.dev", ("kopfpeerings",), ("list", "watch", "patch"),
         "leader election among replicas, one peering object per watched namespace.",
         when=(PEERING, NAMESPACED_MODE)),
)

# A permission: (apiGroup, resource, verb).
Permission = tuple[str, str, str]


def permissions(
    namespaces: Iterable[str] = (),
    *,
    peering: bool = False,
    runtimes: Iterable[str] = RUNTIMES,
) -> dict[str | None, set[Permission]]:
    """What the operator needs, by where it is granted: None is cluster-wide (a ClusterRole),
    a namespace name is a Role in that namespace.

    `namespaces`: the `--namespace` values (empty: the whole cluster); `peering`: more than one
    replica; `runtimes`: the optional training runtimes enabled (JOBSET, KUBEFLOW).
    """
    namespaces = list(namespaces)
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        raise ValueError(f"unknown runtime(s) {sorted(unknown)}; accepted: {', '.join(RUNTIMES)}")
    active = {ALWAYS, *runtimes, NAMESPACED_MODE if namespaces else CLUSTER_MODE}
    if peering:
        active.add(PEERING)

    grants: dict[str | None, set[Permission]] = {}
    for rule in RULES:
        if not all(condition in active for condition in rule.when):
            continue
        scopes: list[str | None] = ([None] if rule.cluster_scoped or not namespaces
                                    else list(namespaces))
        for scope in scopes:
            grants.setdefault(scope, set()).update(
                (rule.api_group, resource, verb)
                for resource in rule.resources
                for verb in rule.verbs
            )
    return grants
