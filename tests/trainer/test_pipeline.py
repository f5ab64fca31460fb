"""prepare -> stage1 -> stage2 -> evaluate -> export on the tiny model and synthetic tasks.

Full fine-tuning at a high learning rate: a randomly initialised 2-layer model learns the
keyword tasks in a few hundred CPU steps (about half a minute on 2 cores)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from multitask_operator.api.results import EvalResults, StepSummary, parse_progress_line
from multitask_operator.prompting import PromptFormat
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline(tiny_model_dir, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see conftest.one_thread; module-scoped here
    folder = tmp_path_factory.mktemp("pipeline")
    spec = write_spec(folder, {"sentiment": 320, "intent": 200, "echo": 120},
                      model=str(tiny_model_dir), method="full", learningRate=3e-3)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["recipe"]["stage1"]["epochs"] = 3
    doc["spec"]["recipe"]["stage2"]["epochs"] = 8
    spec.write_text(yaml.safe_dump(doc))
    ws = folder / "ws"
    log = folder / "termination-log"
    mp = pytest.MonkeyPatch()
    mp.setenv("MTM_TERMINATION_LOG", str(log))
    reports = {}
    try:
        for argv in (["prepare", "--spec", str(spec)], ["train", "--stage", "stage1"],
                     ["train", "--stage", "stage2"], ["evaluate"], ["export"]):
            assert main([argv[0], "--workspace", str(ws), *argv[1:]]) == 0, argv
            reports[argv[-1]] = StepSummary.model_validate(json.loads(log.read_text()))
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return Workspace(ws), reports


def _losses(ws: Workspace, stage: str) -> list[float]:
    lines = ws.progress_file(stage).read_text().splitlines()
    return [parse_progress_line(line).loss for line in lines]


def test_the_loss_falls(pipeline):
    ws, _ = pipeline
    stage1, stage2 = _losses(ws, "stage1"), _losses(ws, "stage2")
    assert stage1[-1] < stage1[0] / 2
    assert stage2[-1] < stage2[0] / 2


def test_training_packs_and_reports_its_padding(pipeline):
    ws, reports = pipeline
    for stage in ("stage1", "stage2"):
        details = reports[stage].details
        assert details["packed"] is True  # the tiny Llama keeps packed examples apart
        assert 0.5 < details["nonPaddingFraction"] <= 1
        last = parse_progress_line(ws.progress_file(stage).read_text().splitlines()[-1])
        assert last.non_padding_fraction == details["nonPaddingFraction"]


def test_classification_ends_clearly_above_the_majority_class(pipeline):
    ws, reports = pipeline
    results = EvalResults.model_validate(json.loads(ws.eval_results_file.read_text()))
    for task in ("sentiment", "intent"):
        gold = [json.loads(line)["output"]
                for line in ws.eval_file(task).read_text().splitlines()]
        majority = Counter(gold).most_common(1)[0][1] / len(gold)
        accuracy = results.task(task).metrics["accuracy"]
        assert accuracy >= majority + 0.2, (task, accuracy, majority)
    echo = results.task("echo")
    assert set(echo.metrics) == {"exact_match", "rouge_l", "chrf"}
    # baseline.score is 0.5 for every task in the spec: sentiment is learned well past it.
    assert results.task("sentiment").qualified and results.task("sentiment").ratio > 1.5
    assert reports["evaluate"].details["scores"]["sentiment"] == results.task("sentiment").score
    # The gate's noise figures: an interval around the score, the majority-class score.
    sentiment = results.task("sentiment")
    low, high = sentiment.score_interval
    assert low <= sentiment.score <= high and sentiment.majority is not None
    assert reports["evaluate"].details["intervals"]["sentiment"]["scoreInterval"] == [low, high]
    assert echo.majority is None and echo.score_interval is not None


def test_export_loads_back_and_answers_in_the_training_format(pipeline):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws, _ = pipeline
    export = ws.export_dir
    model = AutoModelForCausalLM.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    prompt_format = PromptFormat.load(export / "prompt_format.json")
    tasks = {t["name"]: t for t in json.loads((export / "tasks.json").read_text())["tasks"]}
    assert tasks["intent"]["labels"] == ["account", "refund", "shipping"]
    rows = [json.loads(line) for line in ws.eval_file("sentiment").read_text().splitlines()]
    right = 0
    for row in rows[:10]:
        text = prompt_format.render(tasks["sentiment"]["instruction"], row["input"])
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=4, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
        right += tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == row["output"]
    assert right >= 8


def test_finished_steps_are_no_ops(pipeline, capsys):
    ws, _ = pipeline
    before = ws.final_dir("stage2").stat().st_mtime_ns
    for argv in (["train", "--stage", "stage2"], ["evaluate"], ["export"]):
        assert main([argv[0], "--workspace", str(ws.root), *argv[1:]]) == 0
    assert "stage stage2 was already trained" in capsys.readouterr().err
    assert ws.final_dir("stage2").stat().st_mtime_ns == before
