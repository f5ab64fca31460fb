"""Bring a task's data file to the local disk, whatever its location scheme.

    /abs/or/relative.jsonl          read in place
    pvc://CLAIM/PATH                read from $MTM_PVC_ROOT/CLAIM/PATH (default /mnt/pvc): the
                                    training pod mounts each claim there, read-only
    http(s)://...                   downloaded with urllib
    s3://BUCKET/KEY                 downloaded with s3fs (AWS_* credentials; AWS_ENDPOINT_URL for
                                    an S3-compatible store)
    hf://datasets/OWNER/NAME[@REV][/FILE]
                                    a JSONL file of a Hub dataset, with huggingface_hub: FILE, or
                                    else <split>.jsonl or data/<split>.jsonl (train; eval ->
                                    validation)

Downloads go to a temporary name and are renamed when complete, so a killed download is
never mistaken for the data.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from multitask_operator.datafiles import parse_location
from multitask_operator.objectstore import StoreError, first_line, pvc_path, s3

from .errors import TrainerError

DATA_CREDENTIALS = "the Secret named by spec.training.dataSecret"
DOWNLOAD_TIMEOUT_S = 60
HF_SPLITS = {"train": "train", "eval": "validation"}


def fetch(value: str, dest: Path, what: str, split: str = "train") -> Path:
    """A local path holding the data at `value`; remote data is copied to `dest`.

    `what` names the spec field for messages, e.g. "task intent data.train"."""
    where = parse_location(value)
    if where.kind == "local":
        return where.file
    if where.kind == "pvc":
        return pvc_path(value)
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
    with s3_filesystem(url, what) as fs, fs.open(url, "rb") as source, open(out, "wb") as handle:
        shutil.copyfileobj(source, handle)


@contextmanager
def s3_filesystem(url: str, what: str) -> Iterator[Any]:
    """objectstore.s3 for data: a failure is a TrainerError naming `what`."""
    try:
        with s3(url, what, DATA_CREDENTIALS) as fs:
            yield fs
    except StoreError as err:
        raise TrainerError(str(err)) from None


def parse_hf(value: str) -> tuple[str, str | None, str | None]:
    """(OWNER/NAME, revision or None, file or None) of hf://datasets/OWNER/NAME[@REV][/FILE]."""
    parts = value[len("hf://datasets/"):].strip("/").split("/", 2)
    if len(parts) < 2 or not all(parts[:2]):
        raise ValueError(f"{value} must look like hf://datasets/OWNER/NAME[@REVISION][/FILE]")
    name, _, revision = parts[1].partition("@")
    return f"{parts[0]}/{name}", revision or None, parts[2] if len(parts) == 3 else None


def _download_hf(value: str, out: Path, what: str, split: str) -> None:
    shutil.copyfile(hf_file(value, what, split), out)


def hf_file(value: str, what: str, split: str) -> Path:
    """The local copy (in the Hub client's cache, `.../snapshots/<commit>/FILE`) of a JSONL file
    of a Hub dataset, through huggingface_hub (HF_TOKEN for private ones, its cache and offline
    mode as usual): FILE when given, else `<split>.jsonl` or `data/<split>.jsonl` with split
    train or validation (for data.eval)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        repo, revision, file = parse_hf(value)
    except ValueError as err:
        raise TrainerError(f"{what}: {err}") from None
    name = HF_SPLITS[split]
    candidates = [file] if file else [f"{name}.jsonl", f"data/{name}.jsonl"]
    offline_miss: LocalEntryNotFoundError | None = None
    for candidate in candidates:
        try:
            return Path(hf_hub_download(repo, candidate, repo_type="dataset",
                                        revision=revision))
        except LocalEntryNotFoundError as err:  # offline, or the Hub unreachable: not cached
            offline_miss = err  # (a subclass of EntryNotFoundError: caught first)
            continue
        except EntryNotFoundError:
            continue
        except RepositoryNotFoundError:
            raise TrainerError(
                f"{what}: {value}: no dataset {repo} on the Hub, or no access to it (a private "
                "one needs HF_TOKEN, from the Secret named by spec.training.dataSecret)"
            ) from None
        except RevisionNotFoundError:
            raise TrainerError(f"{what}: {value}: dataset {repo} has no revision "
                               f"'{revision}'") from None
        except (HfHubHTTPError, OSError) as err:
            raise TrainerError(f"{what}: cannot download {value}: {first_line(err)}") from None
    if offline_miss is not None:
        raise TrainerError(f"{what}: {value}: {' or '.join(candidates)} of dataset {repo} is "
                           "not in the local Hub cache and the Hub cannot be reached (offline)")
    raise TrainerError(
        f"{what}: {value}: dataset {repo} has no {' or '.join(candidates)}; name the file: "
        f"hf://datasets/{repo}/FILE.jsonl")
