"""The Argo CD health check (charts/argocd/health.lua) run by a real Lua 5.1 interpreter.

    .venv/bin/python -m pytest tests/chart/test_chart_health_lua.py -q   (needs lua5.1)

Argo CD hands the script the live object as the global `obj` (JSON turned into Lua tables, nulls
dropped) and reads back `{status, message}`; the harness below does the same.
"""

from __future__ import annotations

import json
import subprocess

import kubernetes_validate
import pytest
import yaml
from multitask_operator.api.common import Phase

from .tools import ARGOCD, KUBE_VERSION, find_tool

HEALTH_LUA = (ARGOCD / "health.lua").read_text()


def to_lua(value: object) -> str:
    """A Lua 5.1 literal for a JSON value; JSON strings are valid Lua strings once escaped."""
    if isinstance(value, dict):
        items = ", ".join(f"[{to_lua(k)}] = {to_lua(v)}" for k, v in value.items() if v is not None)
        return "{" + items + "}"
    if isinstance(value, list):
        return "{" + ", ".join(to_lua(v) for v in value) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # ensure_ascii=False: Lua 5.1 has no \u escapes; its strings are bytes, UTF-8 passes as is.
    return json.dumps(value, ensure_ascii=False)


def run_health_check(obj: dict) -> tuple[str, str]:
    script = (
        f"obj = {to_lua(obj)}\n"
        f"local function check()\n{HEALTH_LUA}\nend\n"
        "local hs = check()\n"
        'io.write(hs.status, "\\n", hs.message or "")\n'
    )
    result = subprocess.run(
        [find_tool("lua5.1"), "-"], input=script.encode(), capture_output=True, timeout=10
    )
    assert result.returncode == 0, result.stderr.decode()
    status, _, message = result.stdout.decode().partition("\n")
    return status, message


def model(status: dict | None, generation: int = 3) -> dict:
    obj = {
        "apiVersion": "multitask.ai/v1alpha1",
        "kind": "MultiTaskModel",
        "metadata": {"name": "support-assistant", "namespace": "ml", "generation": generation},
        "spec": {"tasks": [{"name": "intent"}]},
    }
    if status is not None:
        obj["status"] = status
    return obj


def test_no_status_yet_waits_for_the_operator() -> None:
    assert run_health_check(model(None)) == ("Progressing", "Waiting for the operator")


def test_status_without_phase_waits_for_the_operator() -> None:
    assert run_health_check(model({"conditions": []})) == (
        "Progressing", "Waiting for the operator")


IN_PROGRESS = [p.value for p in Phase if p not in (Phase.READY, Phase.FAILED)]


def test_the_check_knows_every_phase_of_the_api() -> None:
    for phase in Phase:
        assert phase.value in HEALTH_LUA, f"health.lua does not handle phase {phase.value}"


@pytest.mark.parametrize("phase", IN_PROGRESS)
def test_working_phases_are_progressing(phase: str) -> None:
    status, message = run_health_check(model({"phase": phase, "observedGeneration": 3}))
    assert (status, message) == ("Progressing", phase)


def test_progress_and_message_are_shown_while_training() -> None:
    status, message = run_health_check(model({
        "phase": "TrainingStage2",
        "observedGeneration": 3,
        "message": "stage2 step 420/1000",
        "progress": {"stage": "stage2", "percent": 42.4, "etaSeconds": 1800},
    }))
    assert (status, message) == ("Progressing", "TrainingStage2 42%: stage2 step 420/1000")


def test_ready_is_healthy() -> None:
    ready = {"phase": "Ready", "observedGeneration": 3,
             "message": "4 of 5 tasks served by the unified model",
             "conditions": [{"type": "Ready", "status": "True", "reason": "Deployed"}],
             "serving": {"gpusBefore": 5, "gpusAfter": 2, "costReduction": 0.6}}
    assert run_health_check(model(ready)) == (
        "Healthy", "4 of 5 tasks served by the unified model")
    assert run_health_check(model({"phase": "Ready", "observedGeneration": 3})) == (
        "Healthy", "Ready")


def test_failed_is_degraded_with_the_status_message() -> None:
    failed = {"phase": "Failed", "observedGeneration": 3,
              "message": 'stage2 failed: data/intent/train.jsonl:17: "output" is not a label\n'
                         "(données: «remboursé»)"}
    assert run_health_check(model(failed)) == ("Degraded", failed["message"])
    assert run_health_check(model({"phase": "Failed", "observedGeneration": 3})) == (
        "Degraded", "Failed")


@pytest.mark.parametrize("phase", ["Ready", "Failed", "TrainingStage1"])
def test_a_spec_edit_not_yet_observed_is_progressing(phase: str) -> None:
    status = {"phase": phase, "observedGeneration": 2, "message": "old news"}
    assert run_health_check(model(status, generation=3)) == (
        "Progressing", "Waiting for the operator to observe generation 3")
    assert run_health_check(model({"phase": phase}, generation=1))[0] == "Progressing"


def test_a_phase_from_a_newer_operator_is_unknown() -> None:
    assert run_health_check(model({"phase": "Quantizing", "observedGeneration": 3})) == (
        "Unknown", "Unknown phase Quantizing")


def test_argocd_cm_installs_exactly_health_lua() -> None:
    config_map = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())
    kubernetes_validate.validate(config_map, KUBE_VERSION, strict=True)
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "argocd-cm"
    # Argo CD's key format: resource.customizations.health.<group>_<kind>.
    key = "resource.customizations.health.multitask.ai_MultiTaskModel"
    assert config_map["data"] == {key: HEALTH_LUA}
