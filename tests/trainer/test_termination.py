"""Who writes a pod's termination message when torchrun runs several trainer processes in it."""

from __future__ import annotations

import json

import pytest
from multitask_operator.api.results import StepSummary
from multitask_trainer import __main__ as entry

SUCCESS = StepSummary(step="train", stage="stage2", ok=True, message="stage stage2 trained",
                      details={"lastLoss": 0.5})
CRASH = StepSummary(step="train", stage="stage2", ok=False, message="out of GPU memory")
PEER_FAILURE = StepSummary(step="train", stage="stage2", ok=False,
                           message="internal error: RuntimeError: Connection closed by peer")


@pytest.fixture
def log(tmp_path, monkeypatch):
    path = tmp_path / "termination-log"
    path.touch()  # Kubernetes creates the file empty
    monkeypatch.setenv(entry.TERMINATION_LOG_ENV, str(path))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return path


def _written(path) -> StepSummary | None:
    text = path.read_text(encoding="utf-8")
    return StepSummary.model_validate(json.loads(text)) if text else None


def test_a_single_process_writes_its_result(log):
    entry.write_termination_log(SUCCESS)
    assert _written(log) == SUCCESS


def test_only_local_rank_0_writes_a_success(log, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    entry.write_termination_log(SUCCESS)
    assert _written(log) is None
    monkeypatch.setenv("LOCAL_RANK", "0")
    entry.write_termination_log(SUCCESS)
    assert _written(log) == SUCCESS


def test_the_first_failure_stays(log, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    entry.write_termination_log(CRASH)  # any rank writes its failure
    monkeypatch.setenv("LOCAL_RANK", "0")
    entry.write_termination_log(PEER_FAILURE)
    entry.write_termination_log(SUCCESS)
    assert _written(log) == CRASH


def test_a_failure_from_a_previous_run_is_replaced(log, monkeypatch):
    entry.write_termination_log(CRASH)
    monkeypatch.setattr(entry, "STARTED", log.stat().st_mtime + 60)  # this run started later
    entry.write_termination_log(SUCCESS)
    assert _written(log) == SUCCESS


def test_a_shorter_message_replaces_a_longer_one_whole(log):
    log.write_text(json.dumps({"ok": True, "message": "x" * 500}), encoding="utf-8")
    entry.write_termination_log(CRASH)
    assert _written(log) == CRASH
