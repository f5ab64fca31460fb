"""The reconcile core after training: rollout, cutover modes, cost figures, rollback, deletion."""

from __future__ import annotations

import json

from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import (
    APPROVE_ANNOTATION,
    Absent,
    Apply,
    Patch,
    finalize,
    reconcile,
    training_revision,
)
from multitask_operator.reconcile.cutover import CUTOVER_ANNOTATION, TAKEN_OVER_ANNOTATION
from multitask_operator.reconcile.observed import deployment_state
from multitask_operator.render.meta import REVISION_ANNOTATION

from . import factories as f

CONFIG = OperatorConfig()
REV = training_revision(MultiTaskModelSpec.model_validate(f.spec()))
DEPLOYED = {"demo-inference": f.deployment("demo-inference", REV),
            "demo-gateway": f.deployment("demo-gateway", REV)}
SERVICES = {"intent-svc": f.service("intent-svc", gpus=1),
            "topic-svc": f.service("topic-svc", gpus=2)}


def patches(outcome, kind="Service"):
    return [a for a in outcome.actions if isinstance(a, Patch) and a.kind == kind]


def ready(spec=None, **fields):
    rev = training_revision(MultiTaskModelSpec.model_validate(spec or f.spec()))
    deployed = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    fields.setdefault("services", dict(SERVICES))
    return f.observed(spec, jobs=f.finished_jobs(rev), deployments=deployed, **fields)


def test_export_done_rolls_out_inference_and_gateway():
    out = reconcile(f.observed(jobs=f.finished_jobs(REV), services=SERVICES), CONFIG)
    kinds = [(a.obj["kind"], a.obj["metadata"]["name"]) for a in out.actions
             if isinstance(a, Apply)]
    assert kinds == [("Deployment", "demo-inference"), ("Service", "demo-inference"),
                     ("NetworkPolicy", "demo-inference"), ("ConfigMap", "demo-gateway-config"),
                     ("Deployment", "demo-gateway"),
                     ("Service", "demo-gateway"), ("PodDisruptionBudget", "demo-gateway")]
    assert out.status["phase"] == "Deploying"
    assert patches(out) == []  # nothing is cut over before the gateway is available
    config = json.loads(next(a.obj for a in out.actions if isinstance(a, Apply)
                             and a.obj["kind"] == "ConfigMap")
                        ["data"]["gateway.json"])
    assert [t["name"] for t in config["tasks"]] == ["intent", "topic"]
    assert config["promptFormat"]["prefix"] == "<u>"


def test_auto_cutover_repoints_qualified_services_and_reports_cost():
    out = reconcile(ready(), CONFIG)
    assert out.status["phase"] == "Ready"
    owner = patches(out, "MultiTaskModel")
    assert owner and out.actions.index(owner[0]) < out.actions.index(patches(out)[0])
    assert owner[0].patch["metadata"]["annotations"][TAKEN_OVER_ANNOTATION] == (
        "intent-svc,topic-svc")
    intent = next(p for p in patches(out) if p.name == "intent-svc")
    record = json.loads(intent.patch["metadata"]["annotations"][CUTOVER_ANNOTATION])
    assert record["selector"] == {"app": "intent-svc"} and record["gpus"] == 1
    selector = intent.patch["spec"]["selector"]
    assert selector["app"] is None  # the old key is removed, not merged
    assert selector["app.kubernetes.io/component"] == "gateway"
    assert intent.patch["spec"]["ports"][0]["port"] == 80
    serving = out.status["serving"]
    # before: intent 1 + topic 2 (their pods) + summary 1 (baseline.gpus); after: 1 + summary 1
    assert (serving["gpusBefore"], serving["gpusAfter"]) == (4, 2)
    assert serving["costReduction"] == 0.5 and serving["costSaving"] == "50.0%"
    assert serving["endpoint"] == "http://demo-gateway.ml.svc"
    assert serving["revision"] == REV
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["servedBy"] == "unified" and rows["summary"]["servedBy"] == "none"


def test_once_cut_over_the_table_says_unified_and_nothing_is_patched_again():
    services = {
        "intent-svc": f.service("intent-svc", gpus=None,
                                annotations={CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}),
        "topic-svc": f.service("topic-svc", gpus=None,
                               annotations={CUTOVER_ANNOTATION: f.cutover_record("topic-svc")}),
    }
    out = reconcile(ready(services=services,
                          annotations={TAKEN_OVER_ANNOTATION: "intent-svc,topic-svc"}), CONFIG)
    assert patches(out) == [] and patches(out, "MultiTaskModel") == []
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["servedBy"] == "unified" and rows["summary"]["servedBy"] == "none"
    assert out.status["serving"]["gpusBefore"] == 3  # 1 + 1 recorded, 1 from summary's baseline


def test_manual_cutover_waits_for_an_approval_of_the_revision():
    spec = f.spec(serving={"cutover": "Manual"})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    out = reconcile(ready(spec), CONFIG)
    assert out.status["phase"] == "Deploying" and patches(out) == []
    assert APPROVE_ANNOTATION in out.status["message"]
    assert f"{{revision: {rev}, tasks: [intent, topic]}}" in out.status["message"]
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["awaitingApproval"] and rows["topic"]["awaitingApproval"]
    # The annotation names the revision it approves (the kubectl form).
    approved = reconcile(ready(spec, annotations={APPROVE_ANNOTATION: rev}), CONFIG)
    assert {p.name for p in patches(approved)} == {"intent-svc", "topic-svc"}
    assert approved.status["phase"] == "Ready"
    assert not any(r.get("awaitingApproval") for r in approved.status["tasks"])


def test_an_approval_names_one_revision_and_some_tasks():
    spec = f.spec(serving={"cutover": "Manual"})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    # An approval of another revision (the one before a retrain) approves nothing...
    stale = f.spec(serving={"cutover": "Manual", "approvals": [{"revision": "0dd0dd00"}]})
    assert patches(reconcile(ready(stale, annotations={APPROVE_ANNOTATION: "0dd0dd00"}),
                             CONFIG)) == []
    # ...and one of this revision approves the tasks it names, from Git or from kubectl.
    in_git = f.spec(serving={"cutover": "Manual",
                             "approvals": [{"revision": rev, "tasks": ["intent"]}]})
    out = reconcile(ready(in_git), CONFIG)
    assert [p.name for p in patches(out)] == ["intent-svc"]
    assert "cutover of topic waits for an approval" in out.status["message"]
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["intent"]["servedBy"] == "unified" and rows["topic"]["awaitingApproval"]
    annotated = reconcile(ready(spec, annotations={APPROVE_ANNOTATION: f"{rev}:topic"}), CONFIG)
    assert [p.name for p in patches(annotated)] == ["topic-svc"]


def test_an_approval_for_an_unknown_task_is_refused_with_its_path():
    from multitask_operator.loader import validation_problems
    from pydantic import ValidationError

    bad = f.spec(serving={"approvals": [{"revision": "1a2b3c4d", "tasks": ["intent", "nope"]}]})
    try:
        MultiTaskModelSpec.model_validate(bad)
    except ValidationError as err:
        [problem] = validation_problems(err, "spec", None, ("spec",))
    assert problem.path == "spec.serving.approvals[0].tasks[1]"
    assert problem.message.startswith("'nope' is not a task of this model")


def test_cutover_off_never_touches_services_and_restores_taken_ones():
    spec = f.spec(serving={"cutover": "Off"})
    out = reconcile(ready(spec), CONFIG)
    assert patches(out) == [] and out.status["phase"] == "Ready"
    taken = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    out = reconcile(ready(spec, services=taken, annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}),
                    CONFIG)
    [restore] = patches(out)
    assert restore.patch["spec"]["selector"] == {"gw": None, "app": "intent-svc"}
    assert restore.patch["metadata"]["annotations"][CUTOVER_ANNOTATION] is None
    assert patches(out, "MultiTaskModel")[0].patch["metadata"]["annotations"][
        TAKEN_OVER_ANNOTATION] is None


def test_a_task_that_did_not_qualify_keeps_its_service():
    obs = ready()
    obs.jobs = f.finished_jobs(REV, qualified=("intent",))
    out = reconcile(obs, CONFIG)
    assert [p.name for p in patches(out)] == ["intent-svc"]
    rows = {r["name"]: r for r in out.status["tasks"]}
    assert rows["topic"]["qualified"] is False and rows["topic"]["servedBy"] == "own service"
    assert out.status["serving"]["gpusAfter"] == 1 + 2 + 1


def test_no_qualified_task_deploys_nothing():
    obs = f.observed(jobs=f.finished_jobs(REV, qualified=()))
    out = reconcile(obs, CONFIG)
    assert out.status["phase"] == "Failed" and "qualif" in out.status["message"]
    assert [a for a in out.actions if isinstance(a, Apply)] == []


def test_a_failed_rollout_restores_taken_over_services():
    services = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")})}
    deployments = {"demo-inference": f.deployment("demo-inference", REV, available=False,
                                                  failed=True),
                   "demo-gateway": f.deployment("demo-gateway", REV)}
    out = reconcile(f.observed(jobs=f.finished_jobs(REV), deployments=deployments,
                               services=services), CONFIG)
    assert out.status["phase"] == "Failed" and "no GPU available" in out.status["message"]
    assert [p.name for p in patches(out)] == ["intent-svc"]


def test_a_missing_prompt_format_falls_back_with_a_warning():
    obs = f.observed(jobs=f.finished_jobs(REV, prompt=False))
    out = reconcile(obs, CONFIG)
    assert "NoPromptFormat" in [e.reason for e in out.events]


def test_finalize_restores_only_services_this_model_took_over():
    mine = f.service("intent-svc", annotations={CUTOVER_ANNOTATION: f.cutover_record("intent-svc")})
    other = f.service("topic-svc", annotations={CUTOVER_ANNOTATION: json.dumps(
        {"model": "someone-else", "selector": {"x": "y"}})})
    out = finalize(f.observed(services={"intent-svc": mine, "topic-svc": other}))
    assert [p.name for p in patches(out)] == ["intent-svc"] and out.done


# --- scaling: HPAs, disruption budgets, replicas -------------------------------------------

def applied(outcome) -> list[tuple[str, str]]:
    return [(a.obj["kind"], a.obj["metadata"]["name"]) for a in outcome.actions
            if isinstance(a, Apply)]


def absent(outcome) -> set[tuple[str, str]]:
    return {(a.kind, a.name) for a in outcome.actions if isinstance(a, Absent)}


def test_autoscaling_applies_both_hpas_and_both_budgets_after_their_deployments():
    spec = f.spec(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 5}})
    out = reconcile(ready(spec), CONFIG)
    assert applied(out) == [
        ("Deployment", "demo-inference"), ("Service", "demo-inference"),
        ("NetworkPolicy", "demo-inference"),
        ("HorizontalPodAutoscaler", "demo-inference"), ("PodDisruptionBudget", "demo-inference"),
        ("ConfigMap", "demo-gateway-config"), ("Deployment", "demo-gateway"),
        ("Service", "demo-gateway"), ("HorizontalPodAutoscaler", "demo-gateway"),
        ("PodDisruptionBudget", "demo-gateway")]
    assert absent(out) == set()
    objects = {(a.obj["kind"], a.obj["metadata"]["name"]): a.obj for a in out.actions
               if isinstance(a, Apply)}
    assert "replicas" not in objects[("Deployment", "demo-inference")]["spec"]
    assert "replicas" not in objects[("Deployment", "demo-gateway")]["spec"]
    assert objects[("HorizontalPodAutoscaler", "demo-inference")]["spec"]["metrics"][0][
        "pods"]["metric"]["name"] == "tgi_queue_size"


def test_without_autoscaling_the_hpas_and_a_single_replica_budget_are_removed():
    out = reconcile(ready(), CONFIG)
    assert absent(out) == {("HorizontalPodAutoscaler", "demo-inference"),
                           ("HorizontalPodAutoscaler", "demo-gateway"),
                           ("PodDisruptionBudget", "demo-inference")}
    # Only objects this model owns are removed.
    assert {a.owner_uid for a in out.actions if isinstance(a, Absent)} == {f.UID}
    replicated = reconcile(ready(f.spec(serving={"replicas": 3})), CONFIG)
    assert ("PodDisruptionBudget", "demo-inference") in applied(replicated)
    assert absent(replicated) == {("HorizontalPodAutoscaler", "demo-inference"),
                                  ("HorizontalPodAutoscaler", "demo-gateway")}
    deployment = next(a.obj for a in replicated.actions if isinstance(a, Apply)
                      and a.obj["metadata"]["name"] == "demo-inference")
    assert deployment["spec"]["replicas"] == 3


def test_status_reports_the_replicas_the_hpa_chose():
    spec = f.spec(serving={"autoscaling": {"minReplicas": 1, "maxReplicas": 5}})
    obs = ready(spec)
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    obs.deployments["demo-inference"] = deployment_state({
        "metadata": {"name": "demo-inference", "generation": 4},
        "spec": {"replicas": 4,
                 "template": {"metadata": {"annotations": {REVISION_ANNOTATION: rev}}}},
        "status": {"observedGeneration": 4, "updatedReplicas": 4, "availableReplicas": 4,
                   "conditions": [{"type": "Available", "status": "True"}]}})
    out = reconcile(obs, CONFIG)
    assert out.status["phase"] == "Ready"
    assert out.status["serving"]["replicas"] == 4
    assert reconcile(ready(), CONFIG).status["serving"]["replicas"] == 1


def inference_deployment(rev: str, wanted: int, pods: int, updated: int, available: int):
    """The inference Deployment's state: `pods` exist, `updated` run the current template."""
    conditions = [{"type": "Available", "status": "True" if available >= wanted else "False"}]
    return deployment_state({
        "metadata": {"name": "demo-inference", "generation": 3},
        "spec": {"replicas": wanted,
                 "template": {"metadata": {"annotations": {REVISION_ANNOTATION: rev}}}},
        "status": {"observedGeneration": 3, "replicas": pods, "updatedReplicas": updated,
                   "availableReplicas": available, "conditions": conditions}})


def test_an_hpa_scaling_up_keeps_a_deployed_model_ready():
    spec = f.spec(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 6}})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    deployed = {"status": {"phase": "Ready", "serving": {"revision": rev}}}
    # 2 -> 4 replicas: two pods load their weights; the Deployment's Available turns False.
    obs = ready(spec, **deployed)
    obs.deployments["demo-inference"] = inference_deployment(rev, 4, 4, 4, 2)
    out = reconcile(obs, CONFIG)
    assert out.status["phase"] == "Ready" and out.status["serving"]["replicas"] == 4
    # The same shortfall before the revision was ever available: the rollout is not done.
    first = ready(spec)
    first.deployments["demo-inference"] = inference_deployment(rev, 4, 4, 4, 2)
    assert reconcile(first, CONFIG).status["phase"] == "Deploying"
    # A template change (old pods still there) is a rollout, deployed before or not.
    rolling = ready(spec, **deployed)
    rolling.deployments["demo-inference"] = inference_deployment(rev, 4, 5, 1, 4)
    assert reconcile(rolling, CONFIG).status["phase"] == "Deploying"


def test_the_rollout_waits_for_the_hpa_to_apply_min_replicas():
    spec = f.spec(serving={"autoscaling": {"minReplicas": 2, "maxReplicas": 6}})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    obs = ready(spec)  # created without a count: the API server made it 1, all available
    assert obs.deployments["demo-inference"].available
    out = reconcile(obs, CONFIG)
    assert out.status["phase"] == "Deploying" and patches(out) == []  # no cutover yet
    obs.deployments["demo-inference"] = inference_deployment(rev, 2, 2, 2, 2)
    assert reconcile(obs, CONFIG).status["phase"] == "Ready"


# ----------------------------------------------------------------- hardening: who may take what


def _refused_rows(out):
    return {r["name"]: r.get("cutoverBlocked") for r in out.status["tasks"]
            if r.get("cutoverBlocked")}


def test_a_service_another_model_took_over_is_refused_and_its_record_kept():
    other = json.dumps({"model": "other", "selector": {"app": "intent-model"}, "ports": [],
                        "gpus": 2})
    gateway_of_other = {"app.kubernetes.io/name": "multitask-model",
                        "app.kubernetes.io/instance": "other",
                        "app.kubernetes.io/component": "gateway"}
    services = dict(SERVICES, **{"intent-svc": f.service(
        "intent-svc", annotations={CUTOVER_ANNOTATION: other,
                                   "multitask.ai/takeover-by": "demo,other"},
        selector=gateway_of_other)})
    out = reconcile(ready(services=services), CONFIG)
    assert [p.name for p in patches(out)] == ["topic-svc"]  # intent-svc is never patched
    refused = _refused_rows(out)
    assert list(refused) == ["intent"]
    assert "already taken over by MultiTaskModel other" in refused["intent"]
    warnings = [e for e in out.events if e.reason == "CutoverRefused"]
    assert warnings and warnings[0].type == "Warning" and "other" in warnings[0].message
    assert out.status["phase"] == "Ready"
    assert "not cut over: intent (Service intent-svc is already taken over by MultiTaskModel " \
           "other" in out.status["message"]
    ready_condition = next(c for c in out.status["conditions"] if c["type"] == "Ready")
    assert "MultiTaskModel other" in ready_condition["message"]
    # The same refusal on the next reconcile: the status says it, no new Event.
    again = ready(services=services, status=out.status)
    assert not [e for e in reconcile(again, CONFIG).events if e.reason == "CutoverRefused"]


def test_a_selector_of_some_models_pods_is_never_recorded_as_an_original():
    gateway_selector = {"app.kubernetes.io/name": "multitask-model",
                        "app.kubernetes.io/instance": "other",
                        "app.kubernetes.io/component": "gateway"}
    services = dict(SERVICES, **{"intent-svc": f.service("intent-svc",
                                                         selector=gateway_selector)})
    out = reconcile(ready(services=services), CONFIG)
    assert "intent-svc" not in [p.name for p in patches(out)]
    assert "selects the pods of MultiTaskModel other" in _refused_rows(out)["intent"]


def test_a_service_must_opt_in_unless_the_operator_config_says_otherwise():
    services = {name: f.service(name, annotations={}) for name in SERVICES}
    out = reconcile(ready(services=services), CONFIG)
    assert patches(out) == []
    assert _refused_rows(out) == {
        t: f"Service {t}-svc does not opt in: annotate it multitask.ai/takeover-by=demo to let "
           "this model take it over" for t in ("intent", "topic")}
    out = reconcile(ready(services=services), OperatorConfig(service_opt_in=False))
    assert sorted(p.name for p in patches(out)) == ["intent-svc", "topic-svc"]
    assert _refused_rows(out) == {}


def test_the_operator_config_reads_opt_in_from_its_environment():
    assert OperatorConfig.from_env({"MTM_SERVICE_OPT_IN": "false"}).service_opt_in is False
    assert OperatorConfig.from_env({}).service_opt_in is True
    import pytest

    with pytest.raises(ValueError, match="MTM_SERVICE_OPT_IN='maybe' is not a boolean"):
        OperatorConfig.from_env({"MTM_SERVICE_OPT_IN": "maybe"})


def test_cutover_off_restores_from_the_records_while_a_new_revision_trains():
    spec = f.spec(serving={"cutover": "Off"}, training={"learningRate": 1e-3})
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    assert rev != REV  # a retrain: the pipeline is far from serving
    taken = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    obs = f.observed(spec, jobs=f.finished_jobs(REV), services=taken,
                     annotations={TAKEN_OVER_ANNOTATION: "intent-svc"})
    out = reconcile(obs, CONFIG)
    assert out.status["phase"].startswith(("Preparing", "Training"))
    [restore] = patches(out)
    assert restore.patch["spec"]["selector"] == {"gw": None, "app": "intent-svc"}
    assert any(e.reason == "Restored" and "cutover is Off" in e.message for e in out.events)


def test_finalize_needs_only_the_records_even_with_an_invalid_spec():
    bad = f.spec()
    bad["tasks"][0]["metric"] = "rouge_l"  # the CRD accepts it, pydantic does not
    taken = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    out = finalize(f.observed(bad, services=taken,
                              annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}))
    [restore] = patches(out)
    assert restore.patch["spec"]["selector"]["app"] == "intent-svc" and out.done


def test_a_nan_loss_never_reaches_the_status():
    from multitask_operator.api.results import ProgressEvent

    jobs = f.finished_jobs(REV, upto="stage1") + [f.job("stage2", REV, "Running")]
    progress = ProgressEvent(stage="stage2", step=3, total_steps=10, loss=float("nan"),
                             percent=30.0, eta_seconds=float("inf"))
    out = reconcile(f.observed(jobs=jobs, progress=progress), CONFIG)
    json.dumps(out.status, allow_nan=False)  # raises on NaN or Infinity
    assert "loss" not in out.status["progress"] and out.status["progress"]["step"] == 3


def test_an_image_outside_the_allowlist_fails_before_any_training():
    allow = OperatorConfig(allowed_images=["registry.example.com/ml/"])
    spec = f.spec(serving={"image": "evil.example.com/miner:latest"})
    out = reconcile(f.observed(spec), allow)
    assert out.status["phase"] == "Failed" and out.actions == []
    assert out.status["message"] == (
        "spec.serving.image evil.example.com/miner:latest is not allowed by the operator's "
        "allowedImages (registry.example.com/ml/); use an image under one of them")
    ok = f.spec(serving={"image": "registry.example.com/ml/tgi:3.3.6"})
    assert reconcile(f.observed(ok), allow).status["phase"] != "Failed"
    assert reconcile(f.observed(spec), CONFIG).status["phase"] != "Failed"  # no list: any
    assert OperatorConfig.from_env({"MTM_ALLOWED_IMAGES": "a/, b/"}).allowed_images == ["a/",
                                                                                       "b/"]


def test_a_network_policy_lets_only_the_gateway_and_monitoring_reach_the_engine():
    import kubernetes_validate

    out = reconcile(ready(), CONFIG)
    [policy] = [a.obj for a in out.actions if isinstance(a, Apply)
                and a.obj["kind"] == "NetworkPolicy"]
    kubernetes_validate.validate(policy, "1.35.0", strict=True)
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "inference")
    gateway_rule, monitoring_rule = policy["spec"]["ingress"]
    assert gateway_rule["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "multitask-model", "app.kubernetes.io/instance": "demo",
        "app.kubernetes.io/component": "gateway"}}}]
    assert monitoring_rule["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"}
    off = reconcile(ready(), OperatorConfig(network_policy=False))
    assert ("NetworkPolicy", "demo-inference") not in [
        (a.obj["kind"], a.obj["metadata"]["name"]) for a in off.actions if isinstance(a, Apply)]
    assert ("networking.k8s.io/v1", "NetworkPolicy", "demo-inference", f.UID) in {
        (a.api_version, a.kind, a.name, a.owner_uid) for a in off.actions
        if isinstance(a, Absent)}
    quiet = reconcile(ready(), OperatorConfig(metrics_namespace=""))
    [policy] = [a.obj for a in quiet.actions if isinstance(a, Apply)
                and a.obj["kind"] == "NetworkPolicy"]
    assert len(policy["spec"]["ingress"]) == 1


# ----------------------------------------------------------------- never restore onto nothing


def test_a_failed_update_while_an_older_revision_serves_keeps_it_serving():
    services = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    deployments = {"demo-inference": f.deployment("demo-inference", REV, available=False,
                                                  failed=True),
                   "demo-gateway": f.deployment("demo-gateway", REV)}
    previous = {"phase": "Ready", "serving": {"revision": "0ld0ld0ld0ld0ld0", "gpusBefore": 4}}
    out = reconcile(f.observed(jobs=f.finished_jobs(REV), deployments=deployments,
                               services=services, status=previous,
                               annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert patches(out) == []  # the Service stays on the gateway, on the revision that works
    assert out.status["phase"] == "Failed"
    assert out.status["serving"]["revision"] == "0ld0ld0ld0ld0ld0"
    conditions = {c["type"]: c for c in out.status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Ready"]["reason"] == "ServingPreviousRevision"
    assert conditions["Deployed"]["reason"] == "RolloutFailed"
    assert "revision 0ld0ld0ld0ld0ld0 keeps serving" in out.status["message"]
    assert "no GPU available" in out.status["message"]
    assert [e.type for e in out.events if e.reason == "RolloutFailed"] == ["Warning"]


def test_a_restore_waits_for_a_ready_backend():
    spec = f.spec(serving={"cutover": "Off"})
    not_ready = {"intent-svc": f.service("intent-svc", ready=False, annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    out = reconcile(ready(spec, services=not_ready,
                          annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert patches(out) == []
    assert "Service intent-svc stays on the gateway: the pods of its own selector have no " \
           "ready endpoint" in out.status["message"]
    assert [e.reason for e in out.events if e.type == "Warning"] == ["RestoreDeferred"]
    # The next reconcile says the same without a new Event; once a pod is ready, it goes back.
    again = reconcile(ready(spec, services=not_ready, status=out.status,
                            annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert not [e for e in again.events if e.reason == "RestoreDeferred"]
    ready_now = {"intent-svc": f.service("intent-svc", annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    back = reconcile(ready(spec, services=ready_now, status=out.status,
                           annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert [p.name for p in patches(back)] == ["intent-svc"]
    assert "stays on the gateway" not in back.status["message"]


def test_deletion_restores_even_onto_a_backend_that_is_not_ready():
    not_ready = {"intent-svc": f.service("intent-svc", ready=False, annotations={
        CUTOVER_ANNOTATION: f.cutover_record("intent-svc")}, selector={"gw": "1"})}
    out = finalize(f.observed(services=not_ready,
                              annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}))
    assert [p.name for p in patches(out)] == ["intent-svc"]  # the gateway goes with the model


# ----------------------------------------------------------------- retiring old backends


def _old_deployment(name: str, app: str, replicas: int, retired: dict | None = None) -> dict:
    annotations = {"multitask.ai/retired": json.dumps(retired)} if retired else {}
    return {"metadata": {"name": name, "annotations": annotations},
            "spec": {"replicas": replicas, "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]}}}}


def _taken(since: str, *deployments: dict, ready: bool = True) -> dict:
    from multitask_operator.reconcile.observed import service_state

    record = json.dumps({"model": f.NAME, "selector": {"app": "intent-svc"},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8000}],
                         "gpus": 2, "since": since})
    pods = [{"spec": {"containers": [{}]}, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}]
    raw = {"metadata": {"name": "intent-svc", "annotations": {CUTOVER_ANNOTATION: record}},
           "spec": {"selector": {"gw": "1"}, "ports": []}}
    return {"intent-svc": service_state(raw, pods, list(deployments), {"app": "intent-svc"})}


def test_old_backends_are_retired_after_the_hold_and_the_saving_is_counted():
    spec = f.spec(serving={"retireOldBackends": True, "retireAfterSeconds": 600})
    old = _old_deployment("intent-model", "intent-svc", 2)
    # Cut over 5 minutes ago (the factory's clock is 2026-01-01T00:00:00Z): not yet.
    early = reconcile(ready(spec, services=_taken("2025-12-31T23:55:00Z", old),
                            annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert patches(early, "Deployment") == [] and early.requeue_after == 300
    later = reconcile(ready(spec, services=_taken("2025-12-31T23:50:00Z", old),
                            annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    [scale] = patches(later, "Deployment")
    assert scale.name == "intent-model" and scale.patch["spec"] == {"replicas": 0}
    record = json.loads(scale.patch["metadata"]["annotations"]["multitask.ai/retired"])
    assert record == {"model": f.NAME, "replicas": 2, "service": "intent-svc"}
    assert any(e.reason == "Retired" for e in later.events)
    # Once retired, the cost figures count its GPUs as really freed.
    retired = _old_deployment("intent-model", "intent-svc", 0, record)
    after = reconcile(ready(spec, services=_taken("2025-12-31T23:50:00Z", retired),
                            annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert patches(after, "Deployment") == []
    assert after.status["serving"]["gpusRetired"] == 4  # 2 replicas x 2 GPUs


def test_every_way_back_scales_the_old_backend_up_first():
    record = {"model": f.NAME, "replicas": 3, "service": "intent-svc"}
    retired = _old_deployment("intent-model", "intent-svc", 0, record)
    # cutover Off: scaled back up, and the Service waits for a ready pod.
    spec = f.spec(serving={"cutover": "Off", "retireOldBackends": True})
    out = reconcile(ready(spec, services=_taken("2025-12-31T00:00:00Z", retired, ready=False),
                          annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    [scale] = patches(out, "Deployment")
    assert scale.patch == {"metadata": {"annotations": {"multitask.ai/retired": None}},
                           "spec": {"replicas": 3}}
    assert patches(out) == []  # the Service itself waits
    assert "scaled back up from 0" in out.status["message"]
    # retireOldBackends turned off: back up, the Service stays on the gateway.
    spec = f.spec(serving={"retireOldBackends": False})
    out = reconcile(ready(spec, services=_taken("2025-12-31T00:00:00Z", retired),
                          annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}), CONFIG)
    assert [p.patch["spec"] for p in patches(out, "Deployment")] == [{"replicas": 3}]
    assert "intent-svc" not in [p.name for p in patches(out)]
    # Deletion: back up and restored at once (the gateway goes away with the model).
    out = finalize(f.observed(services=_taken("2025-12-31T00:00:00Z", retired, ready=False),
                              annotations={TAKEN_OVER_ANNOTATION: "intent-svc"}))
    assert [(p.kind, p.name) for p in out.actions] == [("Deployment", "intent-model"),
                                                       ("Service", "intent-svc")]
