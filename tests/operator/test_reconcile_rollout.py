"""The reconcile core during a handover (spec.serving.rollout): every transition of a task's
rollout, decided from the previous status and the gateway pods' counters."""

from __future__ import annotations

import json

import pytest
from multitask_operator.api.serving import Rollout
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.config import OperatorConfig
from multitask_operator.reconcile import Absent, Apply, Patch, finalize, reconcile
from multitask_operator.reconcile import rollout as r
from multitask_operator.reconcile.cutover import CUTOVER_ANNOTATION
from multitask_operator.reconcile.handover import rendered_hash
from multitask_operator.reconcile.observed import (
    GatewayReport,
    StepCounts,
    gateway_report,
    service_state,
)
from multitask_operator.reconcile.revision import training_revision

from . import factories as f

CONFIG = OperatorConfig()
CANARY = {"strategy": "Canary", "shadowFirst": True, "steps": [10, 50, 100],
          "intervalSeconds": 60, "minRequests": 20, "agreementFloor": 0.9,
          "errorCeiling": 0.05}
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:30Z", "2026-01-01T00:02:00Z"


def canary_spec(**rollout):
    return f.spec(serving={"rollout": {**CANARY, **rollout}})


REV = training_revision(MultiTaskModelSpec.model_validate(canary_spec()))
LEGACY_URL = "http://demo-old-intent.ml.svc:80"


def taken(name: str):
    """A Service this model has taken over (its own pod is ready)."""
    state = f.service(name, annotations={"multitask.ai/takeover-by": f.NAME,
                                         CUTOVER_ANNOTATION: f.cutover_record(name)})
    return service_state({
        "metadata": {"name": name, "annotations": state.annotations},
        "spec": {"selector": {"app.kubernetes.io/name": "multitask-model",
                              "app.kubernetes.io/instance": f.NAME,
                              "app.kubernetes.io/component": "gateway"},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }, [{"spec": {"containers": []}, "status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}], None, {"app": name})


def observe(spec=None, *, services=None, status=None, report=None, now=T0):
    spec = spec or canary_spec()
    rev = training_revision(MultiTaskModelSpec.model_validate(spec))
    deployed = {n: f.deployment(n, rev) for n in ("demo-inference", "demo-gateway")}
    obs = f.observed(spec, jobs=f.finished_jobs(rev), deployments=deployed,
                     services=services or {"intent-svc": f.service("intent-svc"),
                                           "topic-svc": f.service("topic-svc", gpus=2)},
                     status=status or {}, gateway=report)
    obs.now = now
    return obs


def gateway_config(out) -> dict:
    cm = next(a.obj for a in out.actions if isinstance(a, Apply) and a.obj["kind"] == "ConfigMap")
    return json.loads(cm["data"]["gateway.json"])


def route(out, task="intent"):
    return next(t for t in gateway_config(out)["tasks"] if t["name"] == task).get("rollout")


def serving_hash(out) -> str:
    objects = [a.obj for a in out.actions if isinstance(a, Apply)]
    return rendered_hash(objects, f.NAME)


def report(out, counts=None, problem=None) -> GatewayReport:
    """Two gateway pods serving the config `out` rendered, with these counters."""
    return GatewayReport(pods=2, hashes=(serving_hash(out),) * 2, counts=counts or {},
                         problem=problem)


def row(out, task="intent") -> dict:
    return next(x for x in out.status["tasks"] if x["name"] == task)


def service_patches(out):
    return {a.name: a for a in out.actions if isinstance(a, Patch) and a.kind == "Service"}


def legacy(out):
    return [a for a in out.actions if isinstance(a, (Apply, Absent)) and (
        a.obj["metadata"]["name"] if isinstance(a, Apply) else a.name).startswith("demo-old-")]


def both_taken():
    return {"intent-svc": taken("intent-svc"), "topic-svc": taken("topic-svc")}


def in_phase(state: str, weight: int, phase: int, since=T0, revision=REV) -> dict:
    rows = [{"name": t, "rollout": {"strategy": "Canary", "state": state, "revision": revision,
                                    "phase": phase, "weight": weight, "since": since}}
            for t in ("intent", "topic")]
    return {"tasks": rows, "serving": {"revision": revision}}


def counts(task="intent", step="shadow", **values) -> dict:
    return {(task, f"{REV}-{step}"): StepCounts(**values)}


def test_before_the_cutover_the_route_and_the_old_backends_service_come_first():
    out = reconcile(observe(), CONFIG)
    assert route(out) == {"legacy": LEGACY_URL, "weight": 0, "sampleRate": 1.0,
                          "similarity": 0.5, "step": f"{REV}-shadow"}
    applied = {a.obj["metadata"]["name"]: a.obj for a in legacy(out) if isinstance(a, Apply)}
    assert applied["demo-old-intent"]["spec"]["selector"] == {"app": "intent-svc"}
    assert applied["demo-old-intent"]["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": 8000}]
    assert applied["demo-old-intent"]["metadata"]["ownerReferences"][0]["uid"] == f.UID
    # No gateway pod reports that config yet: nothing is taken over.
    assert service_patches(out) == {}
    assert row(out)["rollout"]["state"] == "Pending"
    assert out.requeue_after is not None


def test_the_cutover_waits_until_every_gateway_pod_serves_the_route():
    first = reconcile(observe(), CONFIG)
    stale = GatewayReport(pods=2, hashes=(serving_hash(first), "0123456789abcdef"))
    assert service_patches(reconcile(observe(report=stale), CONFIG)) == {}
    out = reconcile(observe(report=report(first)), CONFIG)
    assert set(service_patches(out)) == {"intent-svc", "topic-svc"}
    assert row(out)["rollout"]["state"] == "Pending"  # the phase starts once it is taken


def test_shadow_starts_at_cutover_and_waits_for_its_sample():
    out = reconcile(observe(services=both_taken(), status=in_phase("Pending", 0, 0),
                            report=GatewayReport(pods=1, hashes=("x",)), now=T1), CONFIG)
    status = row(out)["rollout"]
    assert (status["state"], status["weight"], status["since"]) == ("Shadow", 0, T1)
    assert status["reason"] == "0 of 20 compared requests so far"
    assert row(out)["servedBy"] == "own service (shadow)"
    assert "handover: intent shadow, topic shadow" in out.status["message"]


def test_a_shadow_that_holds_moves_to_the_first_canary_step():
    good = counts(compared=40, agreed=39, unified=40, legacy=40)
    out = reconcile(observe(services=both_taken(), status=in_phase("Shadow", 0, 0),
                            report=GatewayReport(pods=1, hashes=("x",), counts=good), now=T2),
                    CONFIG)
    status = row(out)["rollout"]
    assert (status["state"], status["weight"], status["phase"]) == ("Canary", 10, 1)
    assert route(out)["weight"] == 10 and route(out)["step"] == f"{REV}-10"
    assert row(out)["servedBy"] == "unified 10%, own service 90%"
    events = [e for e in out.events if e.reason == "RolloutStep"]
    assert len(events) == 1 and "intent: shadow -> canary 10%" in events[0].message
    assert "agreement 97.5% over 40 requests" in events[0].message
    # topic has no counters: it stays in shadow, untouched.
    assert row(out, "topic")["rollout"]["state"] == "Shadow"


def test_a_step_is_not_promoted_before_its_interval():
    good = counts(compared=40, agreed=40, unified=40)
    out = reconcile(observe(services=both_taken(), status=in_phase("Shadow", 0, 0),
                            report=GatewayReport(pods=1, hashes=("x",), counts=good), now=T1),
                    CONFIG)
    assert row(out)["rollout"]["state"] == "Shadow"
    assert row(out)["rollout"]["reason"].startswith("held 30 of 60 s")
    assert row(out)["rollout"]["agreement"] == 1.0 and row(out)["rollout"]["requests"] == 40
    assert out.requeue_after == 15


def test_disagreement_rolls_one_task_back_and_leaves_the_other_alone():
    bad = counts(step="10", compared=20, agreed=10, unified=20)
    out = reconcile(observe(services=both_taken(), status=in_phase("Canary", 10, 1),
                            report=GatewayReport(pods=1, hashes=("x",), counts=bad), now=T1),
                    CONFIG)
    status = row(out)["rollout"]
    assert (status["state"], status["weight"]) == ("RolledBack", 0)
    assert "agreement 50.0% over 20 compared requests is below agreementFloor 90.0%" in (
        status["reason"])
    assert route(out)["weight"] == 0  # stale connections to the gateway reach the old backend
    restored = service_patches(out)
    assert set(restored) == {"intent-svc"}
    assert restored["intent-svc"].patch["spec"]["selector"]["app"] == "intent-svc"
    warning = next(e for e in out.events if e.reason == "RolledBack")
    assert warning.type == "Warning" and "task intent: rolled back from canary 10%" in (
        warning.message)
    assert row(out, "topic")["rollout"]["state"] == "Canary"
    # The old backend's Service stays while the task is rolled back.
    assert any(isinstance(a, Apply) for a in legacy(out))


def test_errors_above_the_ceiling_roll_back():
    bad = counts(step="10", compared=5, agreed=5, unified=20, unified_errors=2)
    out = reconcile(observe(services=both_taken(), status=in_phase("Canary", 10, 1),
                            report=GatewayReport(pods=1, hashes=("x",), counts=bad), now=T1),
                    CONFIG)
    assert row(out)["rollout"]["state"] == "RolledBack"
    assert "failed 2 of 20 requests (10.0%), above errorCeiling 5.0%" in (
        row(out)["rollout"]["reason"])


def test_a_rolled_back_task_is_not_taken_over_again_for_that_revision():
    status = in_phase("Canary", 10, 1)
    status["tasks"][0]["rollout"].update(state="RolledBack", weight=0)
    services = {"intent-svc": f.service("intent-svc"), "topic-svc": taken("topic-svc")}
    out = reconcile(observe(services=services, status=status,
                            report=GatewayReport(pods=1, hashes=("x",)), now=T2), CONFIG)
    assert "intent-svc" not in service_patches(out)
    assert row(out)["rollout"]["state"] == "RolledBack" and row(out)["servedBy"] == "own service"
    # A new revision starts the handover again.
    status["tasks"][0]["rollout"]["revision"] = "0000beef"
    out = reconcile(observe(services=services, status=status), CONFIG)
    assert row(out)["rollout"]["state"] == "Pending"


def test_the_last_step_promotes_and_the_old_backend_goes_once_the_gateway_dropped_it():
    good = counts(step="50", compared=30, agreed=30, unified=30)
    stale = GatewayReport(pods=1, hashes=("x",), counts=good)
    out = reconcile(observe(services=both_taken(), status=in_phase("Canary", 50, 2),
                            report=stale, now=T2), CONFIG)
    status = row(out)["rollout"]
    assert (status["state"], status["weight"]) == ("Promoted", 100)
    assert route(out) is None and row(out)["servedBy"] == "unified"
    assert any(e.reason == "RolloutPromoted" for e in out.events)
    # The gateway pods still run the config with the route: the Service stays for them.
    assert not any(isinstance(a, Absent) and a.name == "demo-old-intent" for a in out.actions)
    promoted = {"tasks": out.status["tasks"], "serving": out.status["serving"]}
    later = reconcile(observe(services=both_taken(), status=promoted, report=report(out),
                              now=T2), CONFIG)
    assert Absent("v1", "Service", "demo-old-intent", f.UID) in later.actions
    assert row(later)["rollout"]["state"] == "Promoted"


def test_unreadable_metrics_hold_the_step_and_say_why():
    why = "gateway pod g-1 did not answer on http://10.0.0.1:8080/metrics: TimeoutError"
    out = reconcile(observe(services=both_taken(), status=in_phase("Canary", 10, 1),
                            report=GatewayReport(pods=1, problem=why), now=T2), CONFIG)
    assert row(out)["rollout"]["state"] == "Canary"
    assert row(out)["rollout"]["reason"] == f"waiting for the gateway's metrics: {why}"


def test_old_backends_are_not_retired_while_their_task_is_handed_over():
    spec = canary_spec()
    spec["serving"].update(retireOldBackends=True, retireAfterSeconds=0)
    out = reconcile(observe(spec, services=both_taken(), status=in_phase("Canary", 10, 1),
                            report=GatewayReport(pods=1, hashes=("x",)), now=T1), CONFIG)
    assert not [a for a in out.actions if isinstance(a, Patch) and a.kind == "Deployment"]


def test_immediate_has_no_rollout_no_old_backend_service_and_no_route():
    out = reconcile(observe(f.spec()), CONFIG)
    assert route(out) is None and legacy(out) == []
    assert "rollout" not in row(out)
    assert set(service_patches(out)) == {"intent-svc", "topic-svc"}


def test_deletion_mid_canary_restores_every_service():
    out = finalize(observe(services=both_taken(), status=in_phase("Canary", 10, 1)))
    assert set(service_patches(out)) == {"intent-svc", "topic-svc"} and out.done


def test_the_spec_validates_the_steps():
    with pytest.raises(ValueError, match="must end at 100"):
        Rollout(strategy="Canary", steps=[10, 50])
    with pytest.raises(ValueError, match="must increase"):
        Rollout(strategy="Canary", steps=[50, 10, 100])
    assert Rollout(strategy="Shadow").phases() == [None, 100]
    assert Rollout(strategy="Canary", shadow_first=True).phases() == [None, 10, 50, 100]


def test_the_verdict_needs_the_sample_the_floor_the_ceiling_and_the_interval():
    rollout = Rollout(strategy="Canary", min_requests=10, interval_seconds=60)
    assert r.verdict(StepCounts(compared=9, agreed=0), rollout, 600)[0] == "wait"
    assert r.verdict(StepCounts(compared=10, agreed=8, unified=10), rollout, 600)[0] == (
        "rollback")
    assert r.verdict(StepCounts(compared=10, agreed=9, unified=10), rollout, 59)[0] == "wait"
    assert r.verdict(StepCounts(compared=10, agreed=9, unified=10), rollout, 60)[0] == "promote"
    assert r.verdict(StepCounts(compared=10, agreed=10, unified=50, unified_errors=2),
                     rollout, 60)[0] == "rollback"


def test_the_gateways_metrics_are_summed_over_its_pods():
    labels = 'step="r-10",task="intent"'
    pod = """# TYPE mtm_gateway_rollout_compared counter
mtm_gateway_rollout_compared_total{step="r-10",task="intent"} 3.0
# TYPE mtm_gateway_rollout_agreed counter
mtm_gateway_rollout_agreed_total{step="r-10",task="intent"} 2.0
# TYPE mtm_gateway_rollout_answers counter
mtm_gateway_rollout_answers_total{outcome="ok",role="client",side="unified",LABELS} 4.0
mtm_gateway_rollout_answers_total{outcome="error",role="mirror",side="unified",LABELS} 1.0
mtm_gateway_rollout_answers_total{outcome="ok",role="client",side="legacy",LABELS} 6.0
# TYPE mtm_gateway_config_info gauge
mtm_gateway_config_info{hash="abc"} 1.0
""".replace("LABELS", labels)
    got = gateway_report(2, [pod, pod], [])
    assert got.hashes == ("abc", "abc") and got.serving("abc") and not got.serving("abd")
    assert got.step("intent", "r-10") == StepCounts(compared=6, agreed=4, unified=10,
                                                    unified_errors=2, legacy=12)
    partial = gateway_report(2, [pod], ["gateway pod b did not answer"])
    assert not partial.serving("abc") and partial.problem == "gateway pod b did not answer"


def test_retirement_counts_from_the_promotion_not_from_the_cutover():
    spec = canary_spec()
    spec["serving"].update(retireOldBackends=True, retireAfterSeconds=3600)
    promoted = in_phase("Promoted", 100, 3, since=T2)
    services = {"intent-svc": retirable("intent-svc"), "topic-svc": retirable("topic-svc")}
    soon = reconcile(observe(spec, services=services, status=promoted,
                             report=GatewayReport(pods=1, hashes=("x",)), now=T2), CONFIG)
    assert not [a for a in soon.actions if isinstance(a, Patch) and a.kind == "Deployment"]
    later = reconcile(observe(spec, services=services, status=promoted,
                              report=GatewayReport(pods=1, hashes=("x",)),
                              now="2026-01-01T01:02:00Z"), CONFIG)
    retired = [a.name for a in later.actions if isinstance(a, Patch) and a.kind == "Deployment"]
    assert retired == ["intent-model", "topic-model"]


def retirable(name: str):
    """A taken-over Service (cut over long ago: its record has no time) with a Deployment
    behind its original selector."""
    state = taken(name)
    deployment = {"metadata": {"name": name.replace("-svc", "-model"), "annotations": {}},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name}}, "spec": {
                               "containers": []}}}}
    return service_state({"metadata": {"name": name, "annotations": state.annotations},
                          "spec": {"selector": state.selector, "ports": state.ports}},
                         [], [deployment], {"app": name})
