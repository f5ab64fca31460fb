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


def test_a_non_finite_loss_stops_the_stage_and_keeps_the_good_checkpoints(
        tiny_model_dir, tmp_path, capsys, monkeypatch, one_thread):
    """Weights that turn NaN mid-stage (as an fp16 overflow or a too high learning rate does):
    the stage fails with one sentence at the next logged step, saves neither that checkpoint nor
    final weights, and the checkpoints from before stay for a resume."""
    import torch
    from multitask_trainer import train

    spec = write_spec(tmp_path, {"sentiment": 120, "intent": 80}, model=str(tiny_model_dir),
                      batchSize=8, maxSteps=8, checkpointEvery=2)
    ws = tmp_path / "ws"
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0

    real, calls = train.run_micro_batches, []

    def poisoned_at_the_fourth_step(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            with torch.no_grad():
                for param in model.parameters():
                    if param.requires_grad:
                        param.fill_(float("nan"))
        return real(model, *args, **kwargs)

    monkeypatch.setattr(train, "run_micro_batches", poisoned_at_the_fourth_step)
    assert main(["train", "--workspace", str(ws), "--stage", "stage2", "--log-every", "3"]) == 2
    err = capsys.readouterr().err
    assert "stage stage2: the training loss is nan at step 4 of 8;" in err
    assert "lower training.learningRate" in err
    assert len(calls) == 4  # stopped at once, not at the next log line (step 6)
    workspace = Workspace(ws)
    assert [step for step, _ in workspace.checkpoints("stage2")] == [2]
    assert not workspace.stage_dir("stage2").joinpath("final").exists()
