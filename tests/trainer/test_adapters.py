"""recipe.keep all-as-adapters with trained baselines: one LoRA adapter per group, baselines
trained and used for qualification, export as base + adapters. A few steps each: this checks
the plumbing, the pipeline test checks the learning."""

from __future__ import annotations

import json

import pytest
import yaml
from multitask_operator.api.results import EvalResults
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main

from tests.trainer.conftest import write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tiny_model_dir, tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("adapters")
    spec = write_spec(folder, {"sentiment": 60, "intent": 60, "echo": 40},
                      model=str(tiny_model_dir), maxSteps=3, batchSize=4,
                      gradientCheckpointing=True)
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["recipe"].update({"taskFiltering": "byType", "keep": "all-as-adapters",
                                  "trainBaselines": True, "highResourceThreshold": 10_000})
    del doc["spec"]["tasks"][2]["baseline"]  # echo: no baseline.score, so one is trained
    spec.write_text(yaml.safe_dump(doc))
    ws = str(folder / "ws")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["prepare", "--workspace", ws, "--spec", str(spec)]) == 0
        plan = json.loads(Workspace(ws).plan_file.read_text())
        stages = [s["name"] for s in plan["stages"]]
        assert stages == ["stage2-classification", "stage2-generation", "baseline-echo"]
        for stage in ("stage2-classification", "stage2-generation", "baseline:echo"):
            assert main(["train", "--workspace", ws, "--stage", stage, "--log-every", "1"]) == 0
        assert main(["evaluate", "--workspace", ws]) == 0
        assert main(["export", "--workspace", ws]) == 0
    finally:
        torch.set_num_threads(threads)
    return Workspace(ws)


def test_each_group_is_evaluated_with_its_own_adapter(workspace):
    results = EvalResults.model_validate(json.loads(workspace.eval_results_file.read_text()))
    assert results.task("intent").stage == "stage2-classification"
    assert results.task("echo").stage == "stage2-generation"
    echo = results.task("echo")
    assert echo.baseline_source == "trained" and echo.baseline is not None
    assert results.task("sentiment").baseline_source == "spec"


def test_export_is_base_plus_one_adapter_per_group(workspace):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    export = workspace.export_dir
    tasks = {t["name"]: t for t in json.loads((export / "tasks.json").read_text())["tasks"]}
    assert tasks["intent"]["adapter"] == "classification"
    assert tasks["echo"]["adapter"] == "generation"
    assert (export / "prompt_format.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(export / "base")
    model = PeftModel.from_pretrained(base, export / "adapters" / "classification")
    model.load_adapter(export / "adapters" / "generation", adapter_name="generation")
    assert set(model.peft_config) == {"default", "generation"}
