"""What identifies the content of a data location, without downloading it when the store can
say (the fingerprints that make changed data retrain):

    local file, pvc://CLAIM/PATH   sha256:<hex of the bytes>
    http(s)://...                  etag:<ETag>, else modified:<Last-Modified> (a HEAD request),
                                   else sha256:<hex> of the body
    s3://BUCKET/KEY                etag:<ETag> (multipart uploads have one too)
    hf://datasets/...              hf:<commit sha> of the file's revision

The prepare step records them for the data it read (and refuses to reuse a workspace whose data
changed); `python -m multitask_trainer fingerprint --spec FILE` prints them for every task, for
the operator's data check.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.datafiles import fingerprint_changes as changes
from multitask_operator.datafiles import parse_location

from .errors import TrainerError

__all__ = ["changes", "fingerprint", "task_fingerprints"]
from .fetch import DOWNLOAD_TIMEOUT_S, hf_file, pvc_path, s3_filesystem

CHUNK = 1 << 20


def _sha256(handle: object) -> str:
    digest = hashlib.sha256()
    read = handle.read  # type: ignore[attr-defined]
    while chunk := read(CHUNK):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _file(path: Path, what: str) -> str:
    try:
        with open(path, "rb") as handle:
            return _sha256(handle)
    except FileNotFoundError:
        raise TrainerError(f"{what}: {path}: file not found") from None
    except OSError as err:
        raise TrainerError(f"{what}: {path}: {err.strerror or err}") from None


def _http(url: str, what: str) -> str:
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        if etag:
            return f"etag:{etag}"
        if modified:
            return f"modified:{modified}"
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return _sha256(response)
    except urllib.error.HTTPError as err:
        raise TrainerError(f"{what}: {url} answered HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        raise TrainerError(f"{what}: cannot download {url}: {getattr(err, 'reason', err)}"
                           ) from None


def _s3(url: str, what: str) -> str:
    with s3_filesystem(url, what) as fs:
        info = fs.info(url)
    etag = str(info.get("ETag") or info.get("etag") or "").strip('"')
    if not etag:
        with s3_filesystem(url, what) as fs, fs.open(url, "rb") as handle:
            return _sha256(handle)
    return f"etag:{etag}"


def _hf(value: str, what: str, split: str) -> str:
    path = hf_file(value, what, split)
    parts = path.parts
    if "snapshots" in parts:  # .../snapshots/<commit>/FILE: the cache names the commit
        return f"hf:{parts[parts.index('snapshots') + 1]}"
    return _file(path, what)


def fingerprint(value: str, what: str, split: str = "train") -> str:
    """The fingerprint of the data at `value` (resolved as prepare resolves it)."""
    where = parse_location(value)
    if where.kind == "local":
        return _file(where.file, what)
    if where.kind == "pvc":
        return _file(pvc_path(value), what)
    if where.kind == "http":
        return _http(value, what)
    if where.kind == "s3":
        return _s3(value, what)
    return _hf(value, what, split)


def task_fingerprints(spec: MultiTaskModelSpec) -> dict[str, dict[str, str]]:
    """{task: {"train": fingerprint, "eval"?: fingerprint}} of every task of `spec`."""
    out: dict[str, dict[str, str]] = {}
    for task in spec.tasks:
        entry = {"train": fingerprint(task.data.train, f"task {task.name} data.train")}
        if task.data.eval is not None:
            entry["eval"] = fingerprint(task.data.eval, f"task {task.name} data.eval", "eval")
        out[task.name] = entry
    return out
