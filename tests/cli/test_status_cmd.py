"""`mtm status`: a MultiTaskModel's status (as kubectl prints the object) explained, with what
waits for an approval and the approval to give. The statuses are the reconcile core's own."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner
from multitask_operator.cli import cli
from multitask_operator.reconcile import reconcile

from tests.operator import factories as f
from tests.operator.test_reconcile_rollout import CONFIG, both_taken, in_phase, observe


def mtm_status(obj, as_yaml=True) -> tuple[int, str]:
    text = yaml.safe_dump(obj) if as_yaml else json.dumps(obj)
    result = CliRunner().invoke(cli, ["status", "-"], input=text)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def model(status) -> dict:
    return {"apiVersion": "multitask.ai/v1alpha1", "kind": "MultiTaskModel",
            "metadata": {"name": "demo"}, "spec": f.spec(), "status": status}


def test_it_prints_what_waits_for_an_approval_and_how_to_give_it():
    spec = f.spec(serving={"cutover": "Manual"})
    out = reconcile(observe(spec), CONFIG)
    code, text = mtm_status(model(out.status))
    revision = out.status["revision"]
    assert code == 0, text
    assert text.startswith(f"demo: Deploying, revision {revision}")
    assert "intent" in text and "awaiting approval" in text
    assert f"Waiting for an approval of revision {revision}: intent, topic." in text
    assert f"  - revision: {revision}\n    tasks: [intent, topic]" in text
    assert (f"kubectl annotate mtm demo --overwrite multitask.ai/approve-cutover={revision}"
            ":intent,topic") in text


def test_it_prints_each_tasks_handover():
    out = reconcile(observe(services=both_taken(), status=in_phase("Shadow", 0, 0)), CONFIG)
    code, text = mtm_status(model(out.status), as_yaml=False)
    assert code == 0, text
    line = next(x for x in text.splitlines() if x.strip().startswith("intent"))
    assert "own service (shadow)" in line
    assert "Shadow 0% (waiting for the gateway's metrics: not read yet)" in line
    assert "Waiting for an approval" not in text


def test_anything_else_is_one_sentence_naming_the_input():
    code, text = mtm_status({"kind": "Service", "metadata": {"name": "x"}})
    assert code == 1 and "stdin: expected a MultiTaskModel object" in text and "got Service" in text
    result = CliRunner().invoke(cli, ["status", "/no/such/file.yaml"])
    assert result.exit_code == 1 and "/no/such/file.yaml: cannot read it" in result.output
    code, text = mtm_status(model({"phase": "Sleeping"}))
    assert code == 1 and "demo: its status does not fit" in text
