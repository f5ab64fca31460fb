"""The reconcile core: from what the cluster holds for one MultiTaskModel to what to do next.

    outcome = reconcile(observed, config)     # every change, and on a timer while work runs
    outcome = finalize(observed)               # when the object is being deleted

Pure and stateless: everything is derived from the object (spec, annotations, last status) and
the objects it owns, so an operator restarted at any point reaches the same decision, and Jobs
are created under fixed names, so a Job is never created twice. The order of the lifecycle is
DESIGN.md's: prepare -> stage1 -> stage2 -> baselines -> evaluate -> export -> deploy -> cutover.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import ValidationError

from ..api.common import Cutover, Phase
from ..api.resource import API_VERSION, APPROVE_ANNOTATION, KIND
from ..api.spec import MultiTaskModelSpec
from ..api.status import MultiTaskModelStatus
from ..config import OperatorConfig, image_refusal
from ..loader import validation_problems
from ..render import gateway, jobs, pod, runtimes
from ..render.datacheck import render_data_check
from . import cleanup, cutover, datacheck, handover, rollout, serving, steps
from .actions import (
    PROGRESS_INTERVAL_S,
    ROLLOUT_INTERVAL_S,
    Action,
    Apply,
    Create,
    Delete,
    Event,
    Outcome,
    Patch,
    json_safe,
)
from .conditions import ordered, set_condition
from .observed import FAILED, RUNNING, Observed, ServiceState
from .revision import current_revision
from .table import evaluation, task_rows

RETRY_ANNOTATION = "multitask.ai/retry"


class _Decision:
    """The status being built and the outcome being collected, with the bookkeeping shared by
    every branch: conditions, phase, and an Event whenever phase or message changes."""

    def __init__(self, obs: Observed):
        self.obs = obs
        self.prev = obs.status or {}
        self.out = Outcome()
        self.status: dict[str, Any] = {
            k: v for k, v in self.prev.items() if k not in ("progress", "message")
        }
        self.status["observedGeneration"] = obs.generation
        self.conditions: list[dict[str, Any]] = list(self.prev.get("conditions") or [])
        self.restored: set[str] = set()  # Services given back earlier in this reconcile
        self.deferred: dict[str, str] = {}  # Services that stay on the gateway for now, and why
        self.handover: handover.Handover | None = None  # the rollout, once serving is decided

    def condition(self, kind: str, value: bool | None, reason: str, message: str) -> None:
        self.conditions = set_condition(self.conditions, kind, value, reason, message,
                                        self.obs.now, self.obs.generation)

    def finish(self, phase: Phase, message: str, reason: str, warning: bool = False) -> Outcome:
        if self.deferred:
            deferred = "; ".join(self.deferred[name] for name in sorted(self.deferred))
            if deferred not in (self.prev.get("message") or ""):
                self.out.events.append(Event("Warning", "RestoreDeferred", deferred))
            message += f"; {deferred}"
        self.status["phase"] = str(phase)
        self.status["message"] = message
        self.status["conditions"] = ordered(self.conditions)
        if (self.prev.get("phase"), self.prev.get("message")) != (str(phase), message):
            self.out.events.append(Event("Warning" if warning else "Normal", reason, message))
        # Typed on the way out: the status written is a MultiTaskModelStatus (camelCase, no
        # unset optionals, no NaN), the model the CRD's status schema is generated from.
        self.out.status = MultiTaskModelStatus.model_validate(json_safe(self.status)).to_wire()
        return self.out

    def fail(self, reason: str, message: str, condition: str | None = None) -> Outcome:
        if condition:
            self.condition(condition, False, reason, message)
        self.condition("Ready", False, reason, message)
        self.out.requeue_after = None  # nothing more until the spec or an annotation changes
        return self.finish(Phase.FAILED, message, reason, warning=True)


def invalid_spec(obs: Observed, err: ValidationError) -> Outcome:
    problems = validation_problems(err, "spec", None, ("spec",))
    message = "invalid spec: " + "; ".join(f"{p.path}: {p.message}" for p in problems)
    decision = _Decision(obs)
    for kind in ("Trained", "Evaluated", "Deployed"):
        decision.condition(kind, False, "InvalidSpec", message)
    return decision.fail("InvalidSpec", message)


def _retry(d: _Decision, revision: str) -> set[str]:
    """Delete the failed Jobs of `revision` so that their steps run again; finished ones stay."""
    failed = {j.name for j in d.obs.jobs if j.revision == revision and j.phase == FAILED}
    d.out.actions += [Delete(j.api_version, j.kind, j.name) for j in sorted(
        d.obs.jobs, key=lambda j: j.name) if j.name in failed]
    if RETRY_ANNOTATION in d.obs.annotations:
        d.out.remove_annotations.append(RETRY_ANNOTATION)
    return failed


def reconcile(obs: Observed, config: OperatorConfig) -> Outcome:
    try:
        spec = obs.spec_model or MultiTaskModelSpec.model_validate(obs.spec)
    except ValidationError as err:
        return invalid_spec(obs, err)
    d = _Decision(obs)
    refused_image = image_refusal(spec.serving.image, config)
    if refused_image:  # before any training: it could never be served
        return d.fail("ImageNotAllowed", refused_image, "Deployed")
    if spec.serving.cutover == Cutover.OFF:
        _give_back(d, "cutover is Off")  # whatever else this reconcile decides
    revision = current_revision(spec, obs.status, obs.annotations)
    d.status["revision"] = revision
    d.status["taskCount"] = len(spec.tasks)

    was_failed = d.prev.get("phase") == str(Phase.FAILED)
    edited = d.prev.get("observedGeneration") not in (None, obs.generation)
    retry = RETRY_ANNOTATION in obs.annotations
    if was_failed and not (edited or retry):
        return Outcome()  # Failed is final until the spec is edited or a retry is asked for
    deleted = _retry(d, revision) if (retry or edited) else set()
    if was_failed:
        d.out.events.append(Event("Normal", "Retrying",
                                  "retrying from the failed step; finished steps are reused"))

    current = [j for j in obs.jobs if j.revision == revision and j.name not in deleted]
    kept = cleanup.keep(obs, spec, revision)
    removals, removal_events = cleanup.actions(obs, kept)
    d.out.actions += removals
    d.out.events += removal_events
    walk = steps.walk(spec, current)
    _data(d, spec, revision, walk, config)
    missing = _missing_runtime(obs, spec)
    if missing and not walk.done:
        return d.fail("RuntimeUnavailable", missing, "Trained")

    if not spec.training.workspace.claim_name and not obs.pvc_exists:
        d.out.actions.append(Create(jobs.render_workspace_pvc(
            obs.owner, spec, config)))
    if pod.spec_configmap_name(obs.name, revision) not in obs.configmaps:
        d.out.actions.append(Create(jobs.render_spec_configmap(
            obs.owner, spec, revision)))
    if walk.plan is not None:
        d.status["plan"] = walk.plan.to_wire()
    elif d.prev.get("revision") != revision:
        d.status.pop("plan", None)  # the old revision's plan says nothing about this one
    if walk.failed is not None:
        return _step_failed(d, spec, walk)
    if walk.problem is not None:
        return d.fail("StepResultUnreadable", walk.problem, "Trained")
    if not walk.done:
        return _run_step(d, spec, revision, walk, config, kept)
    return _serve(d, spec, revision, walk, config)


def _data(d: _Decision, spec: MultiTaskModelSpec, revision: str, walk: steps.Walk,
          config: OperatorConfig) -> None:
    """status.data and the data check (reconcile/datacheck.py)."""
    data = datacheck.decide(d.obs, spec, walk.results.get(steps.PREPARE))
    if data.data:
        d.status["data"] = data.data
    d.out.actions += data.actions
    d.out.events += data.events
    if data.check:
        d.out.actions.append(Create(render_data_check(d.obs.owner, spec, revision, data.check,
                                                      config)))
    if data.remove_annotation:
        d.out.remove_annotations.append(datacheck.CHECK_ANNOTATION)
    if data.requeue is not None:
        d.out.requeue(data.requeue)
    if data.data.get("token") != (d.prev.get("data") or {}).get("token"):
        d.out.requeue(1.0)  # new data: the next reconcile starts its revision


def _missing_runtime(obs: Observed, spec: MultiTaskModelSpec) -> str | None:
    """Why the spec's training runtime cannot run here, or None: its API is not served."""
    runtime = spec.training.runtime
    if runtime not in runtimes.OPTIONAL_RUNTIMES or (
            obs.served_runtimes is not None and str(runtime) in obs.served_runtimes):
        return None
    fallback = "use runtime indexedJob" if spec.training.nodes > 1 else "use runtime job"
    return (f"spec.training.runtime is {runtime} but the cluster does not serve "
            f"{runtimes.REQUIRED_API[runtime]}; install it or {fallback}")


def _give_back(d: _Decision, why: str) -> None:
    """Restore every Service the model took over, from their records alone (those whose own
    pods have no ready endpoint stay on the gateway for now)."""
    restores = _restore_all(d)
    if not restores:
        return
    d.out.actions.append(_taken_over_patch(d.obs.name, set(d.deferred)))
    d.out.actions += restores
    d.restored = {p.name for p in restores}
    d.out.events.append(Event("Normal", "Restored", f"{why}; back on their own pods: "
                              + ", ".join(sorted(d.restored))))


def _tasks(d: _Decision, spec: MultiTaskModelSpec, walk: steps.Walk, deployed: bool,
           moved: set[str] | None = None, returned: set[str] | None = None,
           blocked: dict[str, str] | None = None, waiting: set[str] | None = None) -> None:
    """Fill status.tasks; `moved`/`returned`: Services this reconcile takes over / gives back;
    `blocked`: tasks whose cutover was refused, with why."""
    services = d.obs.services
    taken = {name for name, s in services.items() if cutover.is_taken_over(s, d.obs.name)}
    taken = (taken | (moved or set())) - (returned or set()) - d.restored
    cut_over = {t.name for t in spec.tasks if t.service and t.service.name in taken}
    d.status["tasks"] = task_rows(spec, walk.plan, walk.results.get(steps.EVALUATE), cut_over,
                                  deployed, blocked or {}, waiting or set())
    _rollout_rows(d, spec)
    _, qualified, _ = evaluation(walk.results.get(steps.EVALUATE), spec)
    if steps.EVALUATE in walk.results:
        d.status["qualifiedCount"] = len(qualified)


def _rollout_rows(d: _Decision, spec: MultiTaskModelSpec) -> None:
    """status.tasks[].rollout: this reconcile's decisions; before serving is decided (a new
    revision training), the last ones, which still describe the live traffic."""
    prev = {row.get("name"): row.get("rollout") for row in d.prev.get("tasks") or []}
    for row in d.status["tasks"]:
        if d.handover is not None:
            decision = d.handover.decisions.get(row["name"])
            if decision is not None:
                row["rollout"] = decision.status.to_wire()
                row["servedBy"] = d.handover.served_by(row["name"], row["servedBy"])
        elif handover.active(spec) and prev.get(row["name"]):
            row["rollout"] = prev[row["name"]]


def _step_failed(d: _Decision, spec: MultiTaskModelSpec, walk: steps.Walk) -> Outcome:
    job = walk.failed
    assert job is not None
    _tasks(d, spec, walk, deployed=False)
    message = f"step {job.step} failed ({job.kind} {job.name}): {job.message or 'no message'}"
    condition = "Evaluated" if job.step == steps.EVALUATE else (
        "Deployed" if job.step == steps.EXPORT else "Trained")
    return d.fail("JobFailed", message, condition)


def _run_step(d: _Decision, spec: MultiTaskModelSpec, revision: str, walk: steps.Walk,
              config: OperatorConfig, kept: list[str]) -> Outcome:
    step = walk.next_step
    assert step is not None
    obs = d.obs
    kind = runtimes.step_kind(spec, step)[1]
    object_name = runtimes.step_object_name(obs.name, spec, step, revision)
    if walk.job is None:
        try:
            objects = runtimes.render_step(obs.owner, spec, revision, step, config, kept)
        except ValueError as err:
            return d.fail("Unsupported", str(err), "Trained")
        d.out.actions += [Create(obj) for obj in objects]
        d.out.events.append(Event("Normal", "StepStarted", f"started {step}: {kind} "
                                  f"{object_name}"))
        if (runtimes.distributed(spec, step) and spec.training.nodes > 1
                and not spec.training.workspace.claim_name
                and config.workspace_access_mode == "ReadWriteOnce"):
            d.out.events.append(Event(
                "Warning", "WorkspaceNotShared",
                f"{spec.training.nodes} nodes share the workspace claim, which is ReadWriteOnce: "
                "pods on other nodes cannot mount it; set spec.training.workspace.claimName to "
                "a ReadWriteMany claim (or the operator's MTM_WORKSPACE_ACCESS_MODE)"))
        state = "created"
    else:
        kind, object_name = walk.job.kind, walk.job.name
        state = walk.job.phase.lower()
    current = (obs.progress if walk.job is not None and walk.job.phase == RUNNING
               and obs.progress is not None and obs.progress.stage == step else None)
    if current is not None:
        d.status["progress"] = {k: v for k, v in {
            "stage": step, "percent": current.percent, "etaSeconds": current.eta_seconds,
            "step": current.step, "totalSteps": current.total_steps,
            "loss": current.loss}.items() if v is not None}
    else:
        d.status["progress"] = {"stage": step}
    d.status["progress"].update(steps.overall_progress(walk, step, current))
    _tasks(d, spec, walk, deployed=False)
    message = f"{step}: {kind} {object_name} {state}"
    d.condition("Trained", False, "Training", message)
    if step in (steps.EVALUATE, steps.EXPORT):
        d.condition("Trained", True, "Trained", f"revision {revision} trained")
    d.condition("Evaluated", False, "Training" if step != steps.EXPORT else "Evaluated",
                message if step != steps.EXPORT else "scores are in status.tasks")
    if step == steps.EXPORT:
        d.condition("Evaluated", True, "Evaluated", "scores are in status.tasks")
    _keep_serving_conditions(d, revision)
    d.out.requeue(PROGRESS_INTERVAL_S)
    return d.finish(steps.phase_of(step), message, "Step" + step.split("-")[0].capitalize())


def _keep_serving_conditions(d: _Decision, revision: str) -> None:
    """While a new revision trains, the old one keeps serving: say so rather than go dark."""
    served = (d.prev.get("serving") or {}).get("revision")
    if served and served != revision:
        d.condition("Ready", True, "ServingPreviousRevision",
                    f"revision {served} serves while {revision} trains")
    elif not served:
        d.condition("Deployed", False, "NotDeployed", "the model is not deployed yet")
        d.condition("Ready", False, "Training", "the model is not deployed yet")


def _serve(d: _Decision, spec: MultiTaskModelSpec, revision: str, walk: steps.Walk,
           config: OperatorConfig) -> Outcome:
    obs = d.obs
    d.condition("Trained", True, "Trained", f"revision {revision} trained")
    scores, qualified, _ = evaluation(walk.results.get(steps.EVALUATE), spec)
    d.condition("Evaluated", True, "Evaluated",
                f"{len(qualified)} of {len(scores)} evaluated tasks qualified")
    if not qualified:
        _tasks(d, spec, walk, deployed=False)
        return d.fail("NoTaskQualified", "no task reached recipe.qualifyThreshold x its baseline; "
                      "nothing was deployed (see status.tasks)", "Deployed")
    export = walk.results[steps.EXPORT]
    fmt, reported = serving.prompt_format(export)
    adapters = {t.name: t.group for t in walk.plan.tasks} if walk.plan and len(
        walk.plan.groups) > 1 else {}
    plan = handover.plan(obs, spec, revision, qualified, config)
    try:
        routed = [dataclasses.replace(t, rollout=plan.route(t.name)) for t in
                  serving.routed_tasks(spec, qualified, walk.labels, adapters)]
        objects = serving.render_all(obs, spec, revision, routed, fmt, config)
    except ValueError as err:
        return d.fail("RenderFailed", f"cannot render serving objects: {err}", "Deployed")
    ready = handover.gateway_ready(obs, objects)
    d.out.actions += handover.legacy_actions(obs, spec, plan, ready)  # before the routes use them
    d.out.actions += [Apply(obj) for obj in objects]
    d.out.actions += serving.removals(obs, objects)
    if not reported:
        d.out.events.append(Event("Warning", "NoPromptFormat",
                                  "the export step reported no promptFormat; the gateway uses "
                                  "the plain prompt template"))
    available, failure = serving.rollout(obs, revision, spec)
    served = (d.prev.get("serving") or {}).get("revision")
    if failure and served and served != revision:
        # The rolling update of a new revision gave up while the old revision's pods still
        # serve (maxUnavailable 0): the Services stay where they are, on the revision that
        # works, and the status says so.
        message = (f"the rollout of revision {revision} failed ({failure}); revision {served} "
                   "keeps serving")
        _tasks(d, spec, walk, deployed=True)
        d.condition("Deployed", False, "RolloutFailed", message)
        d.condition("Ready", True, "ServingPreviousRevision", message)
        d.out.requeue_after = None
        return d.finish(Phase.FAILED, message, "RolloutFailed", warning=True)
    if failure:
        # Nothing older serves: every task goes back to its own Service (where that can take
        # the traffic) before reporting.
        restores = _restore_all(d)
        if restores:
            d.out.actions.append(_taken_over_patch(obs.name, set(
                cutover.taken_over_names(obs.annotations)) - {p.name for p in restores}))
            d.out.actions += restores
        d.restored = {p.name for p in restores}
        _tasks(d, spec, walk, deployed=False)
        return d.fail("RolloutFailed", failure, "Deployed")
    figures = serving.cost_figures(obs, spec, qualified)
    if not available:
        _tasks(d, spec, walk, deployed=False)
        d.condition("Deployed", False, "RollingOut",
                    f"waiting for the inference and gateway Deployments of {revision}")
        _keep_serving_conditions(d, revision)
        d.out.requeue(ROLLOUT_INTERVAL_S)
        return d.finish(Phase.DEPLOYING, f"rolling out revision {revision}", "RollingOut")

    d.status["serving"] = {"endpoint": gateway.gateway_url(obs.name, obs.namespace),
                           "revision": revision, **serving.replicas(obs), **figures}
    d.condition("Deployed", True, "Available", f"revision {revision} is available")
    d.handover = plan
    d.out.events += plan.events
    if plan.requeue is not None:
        d.out.requeue(plan.requeue)
    if plan.decisions and not ready:  # the gateway pods have yet to load the config
        d.out.requeue(rollout.poll(spec.serving.rollout))
    moves, waiting, moved, returned, blocked = _cutover(d, spec, qualified, config, ready)
    d.out.actions += moves
    _retirement(d, spec, returned | plan.old_backends_serving(spec))
    _tasks(d, spec, walk, deployed=True, moved=moved, returned=returned, blocked=blocked,
           waiting=set(waiting))
    _report_refusals(d, blocked)
    if waiting:
        message = (f"revision {revision} is deployed; cutover of {', '.join(waiting)} waits "
                   f"for an approval of revision {revision}: add {{revision: {revision}, "
                   f"tasks: [{', '.join(waiting)}]}} to spec.serving.approvals, or annotate "
                   f"{APPROVE_ANNOTATION}={revision}")
        d.condition("Ready", False, "AwaitingApproval", message)
        return d.finish(Phase.DEPLOYING, message, "AwaitingApproval")
    message = (f"serving {len(qualified)} of {len(spec.tasks)} tasks with revision {revision}; "
               f"cost saving {figures.get('costSaving', 'n/a')}")
    if blocked:
        message += "; not cut over: " + "; ".join(
            f"{task} ({why})" for task, why in sorted(blocked.items()))
    if plan.decisions:
        message += "; handover: " + ", ".join(rollout.summary(task, decision.status)
                                              for task, decision in sorted(plan.decisions.items()))
    d.condition("Ready", True, "Ready", message)
    return d.finish(Phase.READY, message, "Ready")


def _retirement(d: _Decision, spec: MultiTaskModelSpec, returned: set[str]) -> None:
    """Scale the old backends of Services held on the gateway long enough to 0
    (serving.retireOldBackends), or back up when the option is turned off."""
    obs, wanted = d.obs, spec.serving.retire_old_backends
    retired: list[str] = []
    for name, service in sorted(obs.services.items()):
        record = cutover.original(service, obs.name)
        if record is None or name in returned or name in d.restored or name in d.deferred:
            continue
        if not wanted:
            d.out.actions += cutover.revive(service, obs.name)
            continue
        held = cutover.held_seconds(record, obs.now)
        promoted = d.handover.promoted_for(spec, name, obs.now) if d.handover else None
        if promoted is not None:
            held = min(held, promoted)
        if held < spec.serving.retire_after_seconds:
            d.out.requeue(spec.serving.retire_after_seconds - held)
            continue
        patches = cutover.retire(service, obs.name)
        d.out.actions += patches
        retired += [p.name for p in patches]
    if retired:
        d.out.events.append(Event("Normal", "Retired", "scaled to 0 behind their old "
                                  "Services (counts recorded on them): " + ", ".join(retired)))


def _report_refusals(d: _Decision, blocked: dict[str, str]) -> None:
    """A Warning Event when the set of refused cutovers changes (not on every reconcile)."""
    before = {r.get("name"): r.get("cutoverBlocked") for r in d.prev.get("tasks") or []
              if r.get("cutoverBlocked")}
    if blocked and blocked != before:
        d.out.events.append(Event("Warning", "CutoverRefused", "; ".join(
            f"task {task}: {why}" for task, why in sorted(blocked.items()))))


def approved_tasks(spec: MultiTaskModelSpec, annotations: dict[str, str],
                   revision: str) -> tuple[bool, set[str]]:
    """(every task approved, the tasks approved) for `revision`: spec.serving.approvals entries
    naming it, and the annotation `multitask.ai/approve-cutover: REVISION[:task,task] ...`
    (the kubectl form). Anything naming another revision approves nothing."""
    every, tasks = False, set()
    for approval in spec.serving.approvals:
        if approval.revision == revision:
            if approval.tasks is None:
                every = True
            else:
                tasks |= set(approval.tasks)
    for token in annotations.get(APPROVE_ANNOTATION, "").split():
        named, _, listed = token.partition(":")
        if named == revision:
            if listed:
                tasks |= {t for t in listed.split(",") if t}
            else:
                every = True
    return every, tasks


def _cutover(d: _Decision, spec: MultiTaskModelSpec, qualified: list[str],
             config: OperatorConfig, gateway_ready: bool = True,
             ) -> tuple[list[Action], list[str], set[str], set[str], dict[str, str]]:
    """(patches for the cutover mode, tasks waiting for approval (Manual), Services taken over
    now, Services given back now, tasks whose cutover is refused with why)."""
    obs = d.obs
    mode = spec.serving.cutover
    every, approved_names = approved_tasks(spec, obs.annotations, str(d.status["revision"]))
    rolled_back = d.handover.rolled_back if d.handover else set()
    wanted = {t.service.name: t.name for t in spec.tasks if t.service and t.name in qualified
              and mode != Cutover.OFF and t.name not in rolled_back}
    actions: list[Action] = []
    waiting: list[str] = []
    take: list[Patch] = []
    blocked: dict[str, str] = {}
    for service_name, task in sorted(wanted.items()):
        service = obs.services.get(service_name)
        if service is None:
            d.out.events.append(Event("Warning", "ServiceNotFound",
                                      f"task {task}: Service {service_name} not found; nothing "
                                      "to cut over"))
            continue
        if cutover.is_taken_over(service, obs.name):
            continue
        why = cutover.refusal(service, obs.name, config.service_opt_in)
        if why is not None:
            blocked[task] = why
            continue
        if mode == Cutover.MANUAL and not (every or task in approved_names):
            waiting.append(task)
            continue
        if d.handover and d.handover.route(task) is not None and not gateway_ready:
            # The gateway must have the task's route to its old backend before the Service
            # sends it anything (handover.py): look again shortly.
            d.out.requeue(ROLLOUT_INTERVAL_S)
            continue
        take.append(cutover.take_over(service, obs.name, obs.now))
    # Services taken over but no longer wanted (cutover Off, a task that stopped qualifying or
    # lost its service field) go back to their own pods.
    restore = []
    for name, service in sorted(obs.services.items()):
        record = cutover.original(service, obs.name)
        if name in wanted or name in d.restored or name in d.deferred or record is None:
            continue
        revived = cutover.revive(service, obs.name)
        actions += revived
        blocker = _restore_blocker(service, bool(revived))
        if blocker:
            d.deferred[name] = blocker
        else:
            restore.append(cutover.restore(service, record))
    names = set(cutover.taken_over_names(obs.annotations))
    new_names = (names | {p.name for p in take}) - {p.name for p in restore}
    if take:
        # Recorded on the MultiTaskModel before any Service changes (see cutover.py).
        actions.append(_taken_over_patch(obs.name, new_names))
    actions += take + restore
    if take:
        d.out.events.append(Event("Normal", "CutOver", "moved to the gateway: " + ", ".join(
            p.name for p in take)))
    if restore:
        d.out.events.append(Event("Normal", "Restored", "back on their own pods: " + ", ".join(
            p.name for p in restore)))
    if not take and new_names != names and not d.restored:
        actions.append(_taken_over_patch(obs.name, new_names))
    return actions, waiting, {p.name for p in take}, {p.name for p in restore}, blocked


def _taken_over_patch(model: str, names: set[str]) -> Patch:
    value = ",".join(sorted(names)) or None
    return Patch(API_VERSION, KIND, model, {
        "metadata": {"annotations": {cutover.TAKEN_OVER_ANNOTATION: value}}})


def _restore_blocker(service: ServiceState, reviving: bool = False) -> str | None:
    """Why `service` must not be restored now: a restore never points a Service at a backend
    without ready endpoints (its clients would get nothing)."""
    if reviving:
        return (f"Service {service.name} stays on the gateway while the Deployments behind it "
                "are scaled back up from 0; it is given back once a pod is ready")
    if service.ready_backends == 0:
        return (f"Service {service.name} stays on the gateway: the pods of its own selector "
                "have no ready endpoint; it is given back once one is ready")
    return None


def _restore_all(d: _Decision) -> list[Patch]:
    """Restores of every Service the model took over whose own backend can take the traffic;
    the others are noted in `d.deferred`."""
    patches = []
    for name, service in sorted(d.obs.services.items()):
        record = cutover.original(service, d.obs.name)
        if record is None or name in d.restored:
            continue
        revived = cutover.revive(service, d.obs.name)
        d.out.actions += revived  # scaled back up first; the restore waits for a ready pod
        blocker = _restore_blocker(service, bool(revived))
        if blocker:
            d.deferred[name] = blocker
            continue
        patches.append(cutover.restore(service, record))
    return patches


def finalize(obs: Observed) -> Outcome:
    """Before the object goes away: every Service it took over gets its selector back (even
    onto a backend with no ready pod: the gateway goes away with the model)."""
    actions: list[Action] = []
    for _, service in sorted(obs.services.items()):
        record = cutover.original(service, obs.name)
        if record is not None:
            actions += cutover.revive(service, obs.name)
            actions.append(cutover.restore(service, record))
    out = Outcome(actions=actions, done=True)
    if out.actions:
        out.events.append(Event("Normal", "Restored", "restored before deletion: " + ", ".join(
            p.name for p in out.actions if isinstance(p, Patch) and p.kind == "Service")))
    return out
