"""Bring a task's data file to the local disk, whatever its location scheme.

    /abs/or/relative.jsonl          read in place
    pvc://CLAIM/PATH                read from $MTM_PVC_ROOT/CLAIM/PATH (default /mnt/pvc): the
                                    training pod mounts each claim there, read-only
    http(s)://...                   downloaded with urllib
    s3://BUCKET/KEY                 downloaded through fsspec (needs the s3fs package)
    hf://datasets/OWNER/NAME[/FILE] the `datasets` library: a FILE in the repo, or else the
                                    split named like the data field (train; eval -> validation)

Downloads go to a temporary name and are renamed when complete, so a killed download is
never mistaken for the data.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from multitask_operator.datafiles import parse_location

from .errors import TrainerError

PVC_ROOT_ENV = "MTM_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"
DOWNLOAD_TIMEOUT_S = 60
HF_SPLITS = {"train": "train", "eval": "validation"}


def fetch(value: str, dest: Path, what: str, split: str = "train") -> Path:
    """A local path holding the data at `value`; remote data is copied to `dest`.

    `what` names the spec field for messages, e.g. "task intent data.train"."""
    where = parse_location(value)
    if where.kind == "local":
        return where.file
    if where.kind == "pvc":
        claim_path = value[len("pvc://") :]
        return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / claim_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".download")
    try:
        if where.kind == "http":
            _download_http(value, tmp, what)
        elif where.kind == "s3":
            _download_s3(value, tmp, what)
        else:
            _download_hf(value, tmp, what, split)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    return dest


def _download_http(url: str, out: Path, what: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            with open(out, "wb") as handle:
                shutil.copyfileobj(response, handle)
    except urllib.error.HTTPError as err:
        raise TrainerError(f"{what}: {url} answered HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrainerError(f"{what}: cannot download {url}: {reason}") from err


def _download_s3(url: str, out: Path, what: str) -> None:
    import fsspec

    try:
        with fsspec.open(url, "rb") as source, open(out, "wb") as handle:
            shutil.copyfileobj(source, handle)
    except ImportError as err:
        raise TrainerError(f"{what}: {url} needs the s3fs package ({err})") from err
    except (OSError, PermissionError) as err:
        raise TrainerError(f"{what}: cannot read {url}: {err}") from err


def _download_hf(value: str, out: Path, what: str, split: str) -> None:
    try:
        import datasets
    except ImportError as err:
        raise TrainerError(
            f"{what}: {value} needs the `datasets` package, which is not installed; "
            "copy the data to a pvc:// or http(s):// location instead"
        ) from err
    parts = value[len("hf://datasets/") :].strip("/").split("/", 2)
    if len(parts) < 2:
        raise TrainerError(f"{what}: {value} must look like hf://datasets/OWNER/NAME[/FILE]")
    repo = "/".join(parts[:2])
    try:
        if len(parts) == 3:
            data = datasets.load_dataset("json", data_files=value, split="train")
        else:
            data = datasets.load_dataset(repo, split=HF_SPLITS[split])
    except Exception as err:  # datasets raises many kinds: network, missing split, auth
        raise TrainerError(f"{what}: cannot load {value}: {err}") from err
    missing = {"input", "output"} - set(data.column_names)
    if missing:
        raise TrainerError(
            f"{what}: {value} has columns {', '.join(data.column_names)}; "
            "it needs input and output"
        )
    with open(out, "w", encoding="utf-8") as handle:
        for row in data:
            record = {"input": row["input"], "output": row["output"]}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
