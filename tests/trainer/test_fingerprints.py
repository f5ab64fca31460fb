"""Data fingerprints: prepare records what identifies each task's data, refuses to reuse a
workspace whose data changed, and `fingerprint` reports them for every location kind (local,
http with and without validators, s3 on moto, hf from the Hub client's cache)."""

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
from multitask_trainer.fingerprint import changes, fingerprint

from tests.trainer.conftest import make_examples, write_jsonl, write_spec
from tests.trainer.test_remote_data import (  # noqa: F401
    hub_cache,
    prepare_offline,
    rows,
    s3_env,
    s3_server,  # noqa: F401  (fixtures)
)


def test_prepare_records_fingerprints_and_refuses_changed_data(tmp_path, capsys):
    spec = write_spec(tmp_path, {"sentiment": 60, "intent": 50})
    ws = tmp_path / "ws"
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    marker = json.loads((Workspace(ws).data_dir / "COMPLETE").read_text())
    assert set(marker["fingerprints"]) == {"sentiment", "intent"}
    assert marker["fingerprints"]["intent"]["train"].startswith("sha256:")
    # Unchanged: reused. Cut the file (the spec unchanged): refused, naming the task.
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 0
    write_jsonl(tmp_path / "data" / "intent.jsonl", make_examples("intent", 20))
    capsys.readouterr()
    assert main(["prepare", "--workspace", str(ws), "--spec", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "the data of task intent data.train changed since this workspace was prepared" in err
    assert "mtm run --fresh" in err


def test_the_fingerprint_step_reports_every_task(tmp_path, capsys):
    spec = write_spec(tmp_path, {"sentiment": 60, "intent": 50})
    assert main(["fingerprint", "--spec", str(spec)]) == 0
    assert "fingerprinted the data of 2 tasks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fingerprint"])


def serve(folder, validator: str):
    """A file server sending an ETag (and Last-Modified), Last-Modified only, or neither."""
    class Handler(http.server.SimpleHTTPRequestHandler):
        def send_header(self, keyword, value):
            if keyword.lower() != "last-modified" or validator != "none":
                super().send_header(keyword, value)

        def end_headers(self):
            if validator == "etag":
                super().send_header("ETag", '"v1"')
            super().end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(Handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_http_uses_the_etag_then_last_modified_then_the_bytes(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(rows("intent", 5))
    with_etag, modified, without = (serve(tmp_path, v) for v in ("etag", "modified", "none"))
    try:
        url = f"http://127.0.0.1:{with_etag.server_port}/a.jsonl"
        assert fingerprint(url, "task intent data.train") == 'etag:"v1"'
        url = f"http://127.0.0.1:{modified.server_port}/a.jsonl"
        assert fingerprint(url, "task intent data.train").startswith("modified:")
        url = f"http://127.0.0.1:{without.server_port}/a.jsonl"
        first = fingerprint(url, "task intent data.train")
        assert first.startswith("sha256:")
        (tmp_path / "a.jsonl").write_bytes(rows("intent", 6))
        assert fingerprint(url, "task intent data.train") != first
        with pytest.raises(TrainerError, match="task intent data.train: .* answered HTTP 404"):
            fingerprint(f"http://127.0.0.1:{without.server_port}/gone.jsonl",
                        "task intent data.train")
    finally:
        for server in (with_etag, modified, without):
            server.shutdown()


def test_s3_uses_the_objects_etag(s3_env):  # noqa: F811
    import boto3

    first = fingerprint("s3://support-data/intent/train.jsonl", "task intent data.train")
    assert first.startswith("etag:")
    boto3.client("s3").put_object(Bucket="support-data", Key="intent/train.jsonl",
                                  Body=rows("intent", 51))
    assert fingerprint("s3://support-data/intent/train.jsonl", "t") != first
    with pytest.raises(TrainerError, match="no such object"):
        fingerprint("s3://support-data/nope.jsonl", "task intent data.train")


def test_hf_uses_the_commit_of_the_cached_revision(tmp_path):
    cache = tmp_path / "hub"
    sha = hub_cache(cache, "acme/support", {"data/train.jsonl": rows("intent", 50),
                                            "sentiment.jsonl": rows("sentiment", 60)})
    spec = write_spec(tmp_path, {"sentiment": 60, "intent": 50})
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["tasks"][0]["data"]["train"] = "hf://datasets/acme/support/sentiment.jsonl"
    doc["spec"]["tasks"][1]["data"]["train"] = "hf://datasets/acme/support"
    spec.write_text(yaml.safe_dump(doc))
    done = prepare_offline(tmp_path, spec, cache)
    assert done.returncode == 0, done.stderr
    marker = json.loads((Workspace(tmp_path / "ws").data_dir / "COMPLETE").read_text())
    assert marker["fingerprints"] == {"sentiment": {"train": f"hf:{sha}"},
                                      "intent": {"train": f"hf:{sha}"}}


def test_changes_name_each_location():
    before = {"intent": {"train": "a", "eval": "b"}, "topic": {"train": "c"}}
    after = {"intent": {"train": "a", "eval": "x"}, "topic": {"train": "d"}}
    assert changes(before, after) == ["task intent data.eval", "task topic data.train"]
    assert changes(before, before) == []
