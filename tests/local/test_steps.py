"""Which local steps remain: finished stages are skipped, in order, never past an open one."""

from __future__ import annotations

from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.local.steps import remaining_steps
from multitask_operator.planner import build_plan
from multitask_operator.workspace import Workspace


def make_plan():
    tasks = [{"name": n, "type": "classification", "instruction": "x",
              "data": {"train": "x.jsonl"}} for n in ("a", "b")]
    spec = MultiTaskModelSpec.model_validate(
        {"baseModel": {"id": "m"}, "tasks": tasks, "recipe": {"trainBaselines": True}})
    return build_plan(spec, {"a": 20000, "b": 10})


def finish(directory):
    directory.mkdir(parents=True)
    (directory / "COMPLETE").write_text("{}")


def test_nothing_done(tmp_path):
    done, todo = remaining_steps(Workspace(tmp_path), make_plan())
    assert done == []
    assert [s.name for s in todo] == ["stage1", "stage2", "baseline-a", "baseline-b",
                                      "evaluate", "export"]
    assert todo[0].args == ("train", "--stage", "stage1") and todo[0].total_steps == 2500


def test_finished_stages_are_skipped(tmp_path):
    ws = Workspace(tmp_path)
    finish(ws.final_dir("stage1"))
    finish(ws.final_dir("stage2"))
    done, todo = remaining_steps(ws, make_plan())
    assert [s.name for s in done] == ["stage1", "stage2"]
    assert todo[0].name == "baseline-a"


def test_a_later_marker_is_not_trusted_past_an_open_step(tmp_path):
    ws = Workspace(tmp_path)
    finish(ws.final_dir("stage2"))  # stage1 unfinished: stage2 must run again after it
    done, todo = remaining_steps(ws, make_plan())
    assert done == [] and [s.name for s in todo][:2] == ["stage1", "stage2"]
