"""The train step refuses bad input with one sentence and leaves no finished-looking output."""

from __future__ import annotations

from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec


def test_a_base_model_that_does_not_load(tmp_path, capsys):
    spec = write_spec(tmp_path, {"sentiment": 40, "intent": 30}, model="no-such-model")
    ws = tmp_path / "ws"
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    assert main(["train", "--workspace", str(ws), "--stage", "stage2"]) == 2
    err = capsys.readouterr().err
    assert f"baseModel.path {tmp_path / 'no-such-model'}: the" in err
    assert "does not load" in err
    assert not Workspace(ws).stage_dir("stage2").joinpath("final").exists()


def test_unknown_stage_lists_the_plan_and_untrained_init_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path, {"sentiment": 200, "intent": 30})
    ws = str(tmp_path / "ws")
    assert main(["train", "--workspace", ws, "--stage", "stage1"]) == 2
    assert "not found; run the prepare step first" in capsys.readouterr().err
    assert main(["prepare", "--workspace", ws, "--spec", str(spec)]) == 0
    assert main(["train", "--workspace", ws, "--stage", "stage3"]) == 2
    assert "the plan has: stage1, stage2" in capsys.readouterr().err
    assert main(["train", "--workspace", ws, "--stage", "stage2"]) == 2
    assert "train --stage stage1 first" in capsys.readouterr().err
    assert main(["evaluate", "--workspace", ws]) == 2
    assert "stage stage2 has not finished" in capsys.readouterr().err
