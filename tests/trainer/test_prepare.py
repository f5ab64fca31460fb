"""prepare: validated, split, normalized data and plan.json; bad input gets one clear error."""

from __future__ import annotations

import http.server
import json
import threading
from functools import partial

import pytest
import yaml
from multitask_operator.workspace import Workspace
from multitask_trainer.__main__ import main
from multitask_trainer.errors import TrainerError
from multitask_trainer.prepare import prepare
from multitask_trainer.specfile import load_spec_file

from tests.trainer.conftest import make_examples, write_jsonl, write_spec


@pytest.fixture
def spec_path(tmp_path):
    return write_spec(tmp_path, {"sentiment": 200, "intent": 50, "echo": 40})


def run_prepare(spec_path, ws_dir):
    return prepare(load_spec_file(spec_path), Workspace(ws_dir))


def test_prepare_writes_split_data_manifest_and_plan(spec_path, tmp_path):
    summary = run_prepare(spec_path, tmp_path / "ws")
    ws = Workspace(tmp_path / "ws")
    assert ws.prepared()
    assert summary["counts"] == {"sentiment": 160, "intent": 40, "echo": 32}
    plan = json.loads(ws.plan_file.read_text())
    assert [s["name"] for s in plan["stages"]] == ["stage1", "stage2"]
    assert {t["name"]: t["examples"] for t in plan["tasks"]} == summary["counts"]
    manifest = json.loads(ws.manifest_file.read_text())["tasks"]
    assert manifest["intent"]["labels"] == ["account", "refund", "shipping"]
    assert manifest["echo"]["labels"] is None
    train = ws.train_file("sentiment").read_text().splitlines()
    evals = ws.eval_file("sentiment").read_text().splitlines()
    assert len(train) == 160 and len(evals) == 40
    original = {json.dumps(r) for r in make_examples("sentiment", 200)}
    assert set(train) | set(evals) <= original  # normalized, nothing invented


def test_the_eval_split_is_the_same_on_every_run(spec_path, tmp_path):
    run_prepare(spec_path, tmp_path / "one")
    run_prepare(spec_path, tmp_path / "two")
    one, two = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    assert one.eval_file("intent").read_text() == two.eval_file("intent").read_text()


def test_rerun_is_a_no_op_and_a_changed_spec_is_refused(spec_path, tmp_path):
    run_prepare(spec_path, tmp_path / "ws")
    assert run_prepare(spec_path, tmp_path / "ws")["skipped"] is True
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["training"]["seed"] = 5
    spec_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TrainerError, match="different spec"):
        run_prepare(spec_path, tmp_path / "ws")


def _break(path, line_number, text):
    lines = path.read_text().splitlines()
    lines[line_number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"input": "x", "output": ', "intent.jsonl:7: not valid JSON"),
        ('{"input": "x", "output": "bogus"}', "does not occur in the training data"),
        ('{"input": 3, "output": "refund"}', "intent.jsonl:7: field 'input' must be a string"),
    ],
)
def test_bad_lines_name_the_task_file_and_line(spec_path, tmp_path, line, expected):
    data = tmp_path / "data" / "intent.jsonl"
    _break(data, 7, line)
    if "bogus" in line:  # an unknown label only in eval: declared nowhere, seen nowhere
        doc = yaml.safe_load(spec_path.read_text())
        eval_rows = make_examples("intent", 5, seed=3) + [{"input": "x", "output": "bogus"}]
        write_jsonl(tmp_path / "data" / "intent-eval.jsonl", eval_rows)
        doc["spec"]["tasks"][1]["data"]["eval"] = "data/intent-eval.jsonl"
        spec_path.write_text(yaml.safe_dump(doc))
        data.write_text("".join(json.dumps(r) + "\n" for r in make_examples("intent", 50)))
    with pytest.raises(TrainerError, match="task intent data") as err:
        run_prepare(spec_path, tmp_path / "ws")
    assert expected in str(err.value)
    ws = Workspace(tmp_path / "ws")
    assert not ws.plan_file.exists() and not ws.data_dir.exists()


def test_declared_labels_are_enforced(spec_path, tmp_path):
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["tasks"][0]["labels"] = ["positive", "neutral"]
    spec_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(TrainerError, match=r"sentiment.jsonl:\d+: output 'negative' is not a"):
        run_prepare(spec_path, tmp_path / "ws")


def test_missing_and_empty_files(spec_path, tmp_path):
    (tmp_path / "data" / "echo.jsonl").write_text("\n")
    with pytest.raises(TrainerError, match="task echo data.train: .*echo.jsonl: no examples"):
        run_prepare(spec_path, tmp_path / "ws")
    (tmp_path / "data" / "echo.jsonl").unlink()
    with pytest.raises(TrainerError, match="task echo data.train: .*echo.jsonl: file not found"):
        run_prepare(spec_path, tmp_path / "ws")


def test_cli_exit_code_and_termination_log_on_bad_input(spec_path, tmp_path, monkeypatch,
                                                         capsys):
    log = tmp_path / "termination-log"
    monkeypatch.setenv("MTM_TERMINATION_LOG", str(log))
    (tmp_path / "data" / "echo.jsonl").unlink()
    assert main(["prepare", "--workspace", str(tmp_path / "ws"), "--spec", str(spec_path)]) == 2
    assert "task echo data.train" in capsys.readouterr().err
    report = json.loads(log.read_text())
    assert report["ok"] is False and "file not found" in report["message"]


def test_http_data_is_downloaded_and_an_unreachable_url_is_reported(spec_path, tmp_path):
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "data"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        doc = yaml.safe_load(spec_path.read_text())
        url = f"http://127.0.0.1:{server.server_port}/echo.jsonl"
        doc["spec"]["tasks"][2]["data"]["train"] = url
        spec_path.write_text(yaml.safe_dump(doc))
        summary = run_prepare(spec_path, tmp_path / "ws")
        assert summary["counts"]["echo"] == 32
        doc["spec"]["tasks"][2]["data"]["train"] = url.replace("echo.jsonl", "gone.jsonl")
        spec_path.write_text(yaml.safe_dump(doc))
        with pytest.raises(TrainerError, match="task echo data.train: .*HTTP 404"):
            run_prepare(spec_path, tmp_path / "ws2")
    finally:
        server.shutdown()
        server.server_close()  # closed port: refused at once, not a 60 s timeout
    with pytest.raises(TrainerError, match="task echo data.train: cannot download"):
        run_prepare(spec_path, tmp_path / "ws3")  # the server is gone now


def test_pvc_locations_read_from_the_mount_root(spec_path, tmp_path, monkeypatch):
    claim = tmp_path / "mounts" / "datasets"
    write_jsonl(claim / "echo" / "train.jsonl", make_examples("echo", 40))
    monkeypatch.setenv("MTM_PVC_ROOT", str(tmp_path / "mounts"))
    doc = yaml.safe_load(spec_path.read_text())
    doc["spec"]["tasks"][2]["data"]["train"] = "pvc://datasets/echo/train.jsonl"
    spec_path.write_text(yaml.safe_dump(doc))
    assert run_prepare(spec_path, tmp_path / "ws")["counts"]["echo"] == 32
