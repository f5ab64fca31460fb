"""s3:// and hf:// data through the prepare step: an S3-compatible server on loopback (moto in
server mode) and the Hub client's own offline cache. A bad URL, a missing object or denied
access is one sentence naming the task, the field and the cause."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import moto.settings
import pytest
import yaml
from moto.server import ThreadedMotoServer
from multitask_operator.workspace import Workspace
from multitask_trainer.errors import TrainerError
from multitask_trainer.fetch import parse_hf
from multitask_trainer.prepare import prepare
from multitask_trainer.specfile import load_spec_file

from tests.trainer.conftest import make_examples, write_spec

ROOT = Path(__file__).resolve().parents[2]


def rows(task: str, n: int) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in make_examples(task, n)).encode()


@pytest.fixture(scope="module")
def s3_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{server._server.server_port}"
    client = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket="support-data")
    client.put_object(Bucket="support-data", Key="intent/train.jsonl", Body=rows("intent", 50))
    yield url
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return s3_server


def spec_with(tmp_path, task: str, location: str) -> Path:
    path = write_spec(tmp_path, {"sentiment": 60, "intent": 50})
    doc = yaml.safe_load(path.read_text())
    for entry in doc["spec"]["tasks"]:
        if entry["name"] == task:
            entry["data"]["train"] = location
    path.write_text(yaml.safe_dump(doc))
    return path


def run_prepare(spec: Path, ws: Path) -> dict:
    return prepare(load_spec_file(spec), Workspace(ws))


def test_s3_data_is_read_with_the_environments_credentials(tmp_path, s3_env):
    summary = run_prepare(spec_with(tmp_path, "intent", "s3://support-data/intent/train.jsonl"),
                          tmp_path / "ws")
    assert summary["counts"]["intent"] == 40  # 50 examples, evalFraction 0.2


def test_a_missing_s3_object_names_the_task_field_and_key(tmp_path, s3_env):
    spec = spec_with(tmp_path, "intent", "s3://support-data/intent/nope.jsonl")
    with pytest.raises(TrainerError) as err:
        run_prepare(spec, tmp_path / "ws")
    assert str(err.value) == ("task intent data.train: s3://support-data/intent/nope.jsonl: no "
                              "such object (check the bucket and the key)")


def test_denied_s3_access_names_the_secret_field(tmp_path, s3_env, monkeypatch):
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforce IAM
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN")
    spec = spec_with(tmp_path, "intent", "s3://support-data/intent/train.jsonl")
    with pytest.raises(TrainerError) as err:
        run_prepare(spec, tmp_path / "ws")
    assert str(err.value).startswith("task intent data.train: s3://support-data/intent/"
                                     "train.jsonl: access denied")
    assert "spec.training.dataSecret" in str(err.value)


def test_an_unreachable_s3_endpoint_is_one_sentence(tmp_path, monkeypatch, s3_env):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    spec = spec_with(tmp_path, "intent", "s3://support-data/intent/train.jsonl")
    with pytest.raises(TrainerError, match=r"^task intent data.train: cannot use s3://"):
        run_prepare(spec, tmp_path / "ws")


# ----------------------------------------------------------------------------- hf://


def hub_cache(root: Path, repo: str, files: dict[str, bytes]) -> str:
    """A Hub cache as huggingface_hub lays it out, holding one commit of a dataset repo."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    folder = root / ("datasets--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(sha)
    for name, data in files.items():
        path = folder / "snapshots" / sha / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sha


def prepare_offline(tmp_path: Path, spec: Path, cache: Path) -> subprocess.CompletedProcess:
    """The prepare step as its own process, with the Hub client offline on `cache`."""
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "multitask_trainer", "prepare", "--workspace",
         str(tmp_path / "ws"), "--spec", str(spec)], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=120)


def test_hf_data_comes_from_the_hub_clients_cache(tmp_path):
    cache = tmp_path / "hub"
    hub_cache(cache, "acme/support", {"data/train.jsonl": rows("intent", 50),
                                      "sentiment.jsonl": rows("sentiment", 60)})
    spec = spec_with(tmp_path, "intent", "hf://datasets/acme/support")  # data/train.jsonl
    doc = yaml.safe_load(spec.read_text())
    doc["spec"]["tasks"][0]["data"]["train"] = "hf://datasets/acme/support/sentiment.jsonl"
    spec.write_text(yaml.safe_dump(doc))
    done = prepare_offline(tmp_path, spec, cache)
    assert done.returncode == 0, done.stderr
    assert "prepared 2 tasks" in done.stderr
    manifest = json.loads(Workspace(tmp_path / "ws").manifest_file.read_text())["tasks"]
    assert {t: m["train"] for t, m in manifest.items()} == {"sentiment": 48, "intent": 40}


def test_hf_data_that_is_not_there_is_one_sentence(tmp_path):
    cache = tmp_path / "hub"
    hub_cache(cache, "acme/support", {"other.jsonl": b"{}\n"})
    spec = spec_with(tmp_path, "intent", "hf://datasets/acme/support")
    done = prepare_offline(tmp_path, spec, cache)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: task intent data.train: hf://datasets/acme/support: train.jsonl or "
        "data/train.jsonl of dataset acme/support is not in the local Hub cache and the Hub "
        "cannot be reached (offline)")
    # A dataset the offline cache does not hold at all.
    spec = spec_with(tmp_path, "intent", "hf://datasets/acme/elsewhere/train.jsonl")
    done = prepare_offline(tmp_path, spec, cache)
    assert done.returncode == 2
    assert ("task intent data.train: hf://datasets/acme/elsewhere/train.jsonl: train.jsonl of "
            "dataset acme/elsewhere is not in the local Hub cache") in done.stderr


def test_hf_locations_parse_with_a_revision_and_a_file():
    assert parse_hf("hf://datasets/acme/support") == ("acme/support", None, None)
    assert parse_hf("hf://datasets/acme/support@v2/data/x.jsonl") == (
        "acme/support", "v2", "data/x.jsonl")
    with pytest.raises(ValueError, match="must look like"):
        parse_hf("hf://datasets/acme")
