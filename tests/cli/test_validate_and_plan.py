"""`mtm validate`, `mtm plan` and `mtm crd` as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from multitask_operator.cli import cli

from tests.conftest import EXAMPLES, MINIMAL_SPEC, REPO, manifest

ALL_EXAMPLES = sorted([*EXAMPLES.glob("*/model.yaml"), EXAMPLES / "local" / "smollm2.yaml"])
CLUSTER_COUNTS = [
    "--examples",
    "intent=48000",
    "--examples",
    "sentiment=9000",
    "--examples",
    "urgency=3000",
    "--examples",
    "language=1200",
    "--examples",
    "summary=20000",
]


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def write_model(
    tmp_path: Path,
    spec: dict | None = None,
    data: dict[str, str] | None = None,
    text: str | None = None,
) -> Path:
    for name, content in (data or {}).items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "model.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(manifest(spec or {})))
    return path


def local_spec() -> dict:
    spec = json.loads(json.dumps(MINIMAL_SPEC))
    spec["tasks"][0]["data"]["train"] = "intent.jsonl"
    spec["tasks"][1]["data"]["train"] = "summary.jsonl"
    return spec


def jsonl(*rows) -> str:
    return "".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in rows)


GOOD_DATA = {
    "intent.jsonl": jsonl(
        *[(f"text {i}", ["refund", "shipping", "other"][i % 3]) for i in range(30)]
    ),
    "summary.jsonl": jsonl(*[(f"long text {i}", f"short {i}") for i in range(10)]),
}


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda p: p.parent.name)
def test_every_example_validates_and_plans(example):
    code, out = run("validate", str(example))
    assert code == 0, out
    assert "is valid" in out
    extra = CLUSTER_COUNTS if "support-assistant" in str(example) else []
    code, out = run("plan", str(example), "--output", "json", *extra)
    assert code == 0, out
    plan = json.loads(out)
    assert {t["name"] for t in plan["tasks"]} == {
        t["name"] for t in yaml.safe_load(example.read_text())["spec"]["tasks"]
    }
    for stage in plan["stages"]:
        assert abs(sum(stage["weights"].values()) - 1) < 1e-9
    code, out = run("plan", str(example), *extra)
    assert code == 0 and "stage2" in out


def test_local_example_plan_table():
    code, out = run("plan", str(EXAMPLES / "local" / "model.yaml"))
    assert code == 0, out
    assert "stage1: p (passes)" in out and "filtered out" in out
    assert "title" in out and "order-id" in out


def test_console_script_is_installed():
    mtm = shutil.which("mtm", path=str(Path(sys.executable).parent))
    assert mtm, "the mtm console script is not installed in the virtualenv"
    done = subprocess.run(
        [mtm, "validate", str(EXAMPLES / "local" / "model.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_valid_local_model(tmp_path):
    path = write_model(tmp_path, local_spec(), GOOD_DATA)
    code, out = run("validate", str(path))
    assert code == 0, out
    assert (
        out.strip() == f"{path}: MultiTaskModel demo is valid (2 tasks, 36 local training examples)"
    )


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write_model(
        tmp_path, text="apiVersion: multitask.ai/v1alpha1\nkind: [unclosed\nspec: {}\n"
    )
    code, out = run("validate", str(path))
    assert code == 1
    assert out.startswith(f"{path}:3: YAML syntax error"), out


def test_wrong_api_version_and_kind(tmp_path):
    text = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
    code, out = run("validate", str(write_model(tmp_path, text=text)))
    assert code == 1
    assert f"{tmp_path}/model.yaml:1: apiVersion: must be multitask.ai/v1alpha1, got 'v1'" in out
    assert f"{tmp_path}/model.yaml:2: kind: must be MultiTaskModel, got 'Service'" in out


def test_field_errors_carry_line_and_path(tmp_path):
    spec = local_spec()
    spec["tasks"][0]["metric"] = "rouge_l"
    path = write_model(tmp_path, spec, GOOD_DATA)
    code, out = run("validate", str(path))
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 1
    line_no = next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if "rouge_l" in line
    )
    assert lines[0] == (
        f"{path}:{line_no}: spec.tasks[0].metric: 'rouge_l' does not fit a classification task; "
        "accepted: accuracy or macro_f1"
    )


def test_multi_document_file_reports_each_document(tmp_path):
    good = manifest(local_spec(), name="good")
    bad = manifest({**local_spec(), "recipe": {"qualifyThreshold": 2}}, name="bad")
    path = write_model(tmp_path, data=GOOD_DATA, text=yaml.safe_dump_all([good, None, bad]))
    code, out = run("validate", str(path))
    assert code == 1
    assert "MultiTaskModel good is valid" in out
    assert "spec.recipe.qualifyThreshold: must be less than or equal to 1, got 2" in out


def test_missing_data_file(tmp_path):
    path = write_model(tmp_path, local_spec(), {"intent.jsonl": GOOD_DATA["intent.jsonl"]})
    code, out = run("validate", str(path))
    assert code == 1
    assert f"{tmp_path}/summary.jsonl: spec.tasks[1].data.train: file not found" in out


def test_bad_json_lines_are_reported_with_file_and_line(tmp_path):
    bad = GOOD_DATA["intent.jsonl"].splitlines()
    bad[2] = '{"input": "x", "output": '
    bad[4] = '{"input": "x", "output": "refnd"}'
    bad[6] = '["not", "an", "object"]'
    bad[7] = '{"input": 3, "output": "other"}'
    data = {**GOOD_DATA, "intent.jsonl": "\n".join(bad) + "\n"}
    code, out = run("validate", str(write_model(tmp_path, local_spec(), data)))
    assert code == 1
    f = f"{tmp_path}/intent.jsonl"
    assert f"{f}:3: spec.tasks[0].data.train: not valid JSON" in out
    assert (
        f"{f}:5: spec.tasks[0].data.train: output 'refnd' is not a label; accepted: other, "
        "refund, shipping"
    ) in out
    assert f"{f}:7: spec.tasks[0].data.train: expected a JSON object" in out
    assert f"{f}:8: spec.tasks[0].data.train: field 'input' must be a string, got int" in out


def test_many_bad_lines_are_summarised(tmp_path):
    data = {**GOOD_DATA, "summary.jsonl": "oops\n" * 12}
    code, out = run("validate", str(write_model(tmp_path, local_spec(), data)))
    assert code == 1
    assert "... and 7 more bad lines" in out
    assert len([line for line in out.splitlines() if "summary.jsonl:" in line]) == 5 + 1


def test_classification_data_with_one_label(tmp_path):
    spec = local_spec()
    del spec["tasks"][0]["labels"]
    data = {**GOOD_DATA, "intent.jsonl": jsonl(("a", "same"), ("b", "same"))}
    code, out = run("validate", str(write_model(tmp_path, spec, data)))
    assert code == 1 and "only 1 distinct output ('same'); it needs at least 2 labels" in out


def test_empty_data_file(tmp_path):
    code, out = run(
        "validate", str(write_model(tmp_path, local_spec(), {**GOOD_DATA, "summary.jsonl": "\n"}))
    )
    assert code == 1 and "summary.jsonl: spec.tasks[1].data.train: no examples" in out


def test_unreadable_file_and_empty_file(tmp_path):
    code, out = run("validate", str(tmp_path / "nope.yaml"))
    assert code == 1 and "cannot read" in out
    code, out = run("validate", str(write_model(tmp_path, text="# nothing\n")))
    assert code == 1 and "no MultiTaskModel in the file" in out


def test_plan_json_keys_and_counts_after_eval_split(tmp_path):
    path = write_model(tmp_path, local_spec(), GOOD_DATA)
    code, out = run("plan", str(path), "-o", "json")
    assert code == 0, out
    plan = json.loads(out)
    tasks = {t["name"]: t for t in plan["tasks"]}
    assert tasks["intent"]["examples"] == 27  # 30 minus round(0.1 x 30) held out for eval
    assert tasks["summary"]["examples"] == 9
    assert set(tasks["intent"]) >= {"name", "included", "reason", "highResource", "examples"}
    assert {s["name"] for s in plan["stages"]} == {"stage2"}
    assert set(plan["stages"][0]) >= {"name", "steps", "weights"}


def test_plan_needs_counts_for_remote_data():
    code, out = run("plan", str(EXAMPLES / "support-assistant" / "model.yaml"))
    assert code == 1
    assert "pvc://datasets/intent/train.jsonl cannot be read here" in out
    assert "--examples intent=N" in out
    code, out = run(
        "plan", str(EXAMPLES / "support-assistant" / "model.yaml"), "--examples", "intent"
    )
    assert code == 2 and "expected TASK=COUNT" in out


def test_crd_command_prints_the_committed_crd():
    code, out = run("crd")
    assert code == 0
    assert out == (REPO / "crds" / "multitaskmodels.yaml").read_text()


def test_the_real_benchmark_plans_on_cpu_and_gpu(tmp_path):
    """benchmarks/real's spec (the CPU budget) and the GPU spec build.py --gpu derives from it
    plan for its tasks' sizes; the GPU one runs the recipe's epochs in full, on one GPU."""
    import importlib.util

    loader = importlib.util.spec_from_file_location("real_build",
                                                    REPO / "benchmarks" / "real" / "build.py")
    build = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(build)
    cpu = yaml.safe_load((REPO / "benchmarks" / "real" / "model.yaml").read_text())
    gpu = json.loads(json.dumps(cpu))
    build.full_epochs(gpu["spec"])
    sizes = {"bbc-topic": (1600, 150), "spam": (500, 150), "chat-topic": (300, 100),
             "chat-reply": (300, 60)}  # what build.py writes from the registries' data
    for task, (train, evals) in sizes.items():
        rows = [(f"{task}-{i}", f"text {i}", f"label{i % 3}") for i in range(train + evals + 7)]
        assert build.write(tmp_path, task, rows, train, evals) == {"train": train,
                                                                   "eval": evals}
    steps = {}
    for name, doc in (("cpu", cpu), ("gpu", gpu)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(doc))
        code, out = run("plan", str(path), "--output", "json")
        assert code == 0, out
        steps[name] = {s["name"]: s["steps"] for s in json.loads(out)["stages"]}
    assert steps["cpu"]["stage1"] == steps["cpu"]["stage2"] == 40  # maxSteps caps each stage
    assert steps["gpu"]["stage1"] == 200 and steps["gpu"]["stage2"] == 300  # 2 and 3 epochs
    assert gpu["spec"]["training"]["resources"]["gpus"] == 1
    assert gpu["spec"]["tasks"] == cpu["spec"]["tasks"]
