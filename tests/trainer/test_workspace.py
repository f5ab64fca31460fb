"""The workspace layout: finished outputs are recognisable, interrupted ones are not."""

from __future__ import annotations

import pytest
from multitask_operator.workspace import MARKER, Workspace, is_complete, publish, read_marker


def test_publish_makes_the_directory_appear_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "eval"
    with publish(target, {"qualified": ["a"]}) as scratch:
        (scratch / "results.json").write_text("{}")
        assert not target.exists()
    assert (target / "results.json").is_file()
    assert is_complete(target)
    assert read_marker(target)["qualified"] == ["a"]
    assert not (tmp_path / "eval.partial").exists()


def test_a_failed_publish_leaves_nothing_behind(tmp_path):
    target = tmp_path / "export"
    with pytest.raises(RuntimeError), publish(target) as scratch:
        (scratch / "model.safetensors").write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert not (tmp_path / "export.partial").exists()


def test_leftovers_of_an_interrupted_run_are_cleared(tmp_path):
    target = tmp_path / "final"
    (tmp_path / "final.partial").mkdir()
    (tmp_path / "final.partial" / "junk").write_text("x")
    target.mkdir()  # unmarked: an older layout or a crash between steps
    (target / "stale").write_text("x")
    with publish(target) as scratch:
        (scratch / "fresh").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "fresh"]


def test_checkpoints_lists_only_finished_ones_in_step_order(tmp_path):
    ws = Workspace(tmp_path)
    for step in (20, 5, 10):
        with publish(ws.checkpoint_dir("stage2", step)):
            pass
    ws.checkpoint_dir("stage2", 30).mkdir()  # no marker: killed while saving
    (ws.checkpoints_dir("stage2") / "step-00000040.partial").mkdir()
    assert [s for s, _ in ws.checkpoints("stage2")] == [5, 10, 20]
    assert ws.latest_checkpoint("stage2")[0] == 20
    assert ws.latest_checkpoint("stage1") is None


def test_prepared_needs_both_the_data_marker_and_plan(tmp_path):
    ws = Workspace(str(tmp_path))
    with publish(ws.data_dir):
        pass
    assert not ws.prepared()  # killed after publishing data, before plan.json
    ws.plan_file.write_text("{}")
    assert ws.prepared()
