"""Object storage shared by the trainer and the serving pods: S3 through s3fs, and claims mounted
under /mnt/pvc; publishing a model folder to it and fetching it back (spec.serving.modelStorage).

    pvc://CLAIM/PATH    $MTM_PVC_ROOT/CLAIM/PATH (default /mnt/pvc), the claim mounted there
    s3://BUCKET/PREFIX  s3fs with the AWS_* environment (AWS_ENDPOINT_URL for S3-compatible)

A published folder is complete only once its marker `MTM_COMPLETE` is there: it is written
last (after every file on S3; by an atomic rename of the folder on a claim), so a fetch never
copies half a model, and publishing or fetching again after a crash redoes what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PVC_ROOT_ENV = "MTM_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/pvc"
MARKER = "MTM_COMPLETE"
SCHEMES = ("s3://", "pvc://")


class StoreError(ValueError):
    """One sentence: the location, and what is wrong with it."""


def pvc_path(value: str) -> Path:
    """Where a pvc://CLAIM/PATH location is mounted in the pod."""
    return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT)) / value[len("pvc://"):]


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


@contextmanager
def s3(url: str, what: str, credentials: str) -> Iterator[Any]:
    """An s3fs filesystem, its failures as a StoreError naming `what` and, for a denial,
    where the credentials come from (`credentials`). A fresh client each time: fsspec's
    instance cache would keep the credentials of an earlier call."""
    try:
        import s3fs
    except ImportError as err:
        raise StoreError(f"{what}: {url} needs the s3fs package, which is not installed") \
            from err
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    fs = s3fs.S3FileSystem(skip_instance_cache=True,
                           client_kwargs={"endpoint_url": endpoint} if endpoint else {})
    try:
        yield fs
    except StoreError:
        raise
    except FileNotFoundError:
        raise StoreError(f"{what}: {url}: no such object (check the bucket and the key)"
                         ) from None
    except PermissionError as err:
        raise StoreError(f"{what}: {url}: access denied ({first_line(err)}); the AWS_* "
                         f"credentials come from {credentials}") from None
    except Exception as err:  # botocore's NoCredentialsError, EndpointConnectionError, ...
        raise StoreError(f"{what}: cannot use {url}: {type(err).__name__}: "
                         f"{first_line(err)}") from None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER)


def publish(source: Path, uri: str, credentials: str) -> dict[str, Any]:
    """Copy the model folder `source` to `uri`; {"files", "bytes", "skipped"}."""
    uri = uri.rstrip("/")
    what = "model storage"
    files = _files(source)
    record = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    if uri.startswith("pvc://"):
        target = pvc_path(uri)
        if (target / MARKER).is_file():
            return {**record, "skipped": True}
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            shutil.copytree(source, scratch, ignore=shutil.ignore_patterns(MARKER))
            (scratch / MARKER).write_text(json.dumps(record))
            if target.exists():
                shutil.rmtree(target)  # an unfinished copy without the marker
            os.replace(scratch, target)
        except OSError as err:
            raise StoreError(f"{what}: cannot write {uri} ({target}): {err.strerror or err}"
                             ) from None
        return {**record, "skipped": False}
    if not uri.startswith("s3://"):
        raise StoreError(f"{what}: {uri} is not an s3:// or pvc:// location")
    with s3(uri, what, credentials) as fs:
        if fs.exists(f"{uri}/{MARKER}"):
            return {**record, "skipped": True}
        for path in files:
            fs.put_file(str(path), f"{uri}/{path.relative_to(source).as_posix()}")
        with fs.open(f"{uri}/{MARKER}", "w") as handle:
            handle.write(json.dumps(record))
    return {**record, "skipped": False}


def fetch(uri: str, dest: Path, credentials: str) -> dict[str, Any]:
    """Copy the published model at `uri` into `dest` (created; its parent must exist)."""
    uri = uri.rstrip("/")
    what = "model storage"
    if (dest / MARKER).is_file():
        return {"skipped": True}
    scratch = dest.with_name(dest.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    if uri.startswith("pvc://"):
        source = pvc_path(uri)
        if not (source / MARKER).is_file():
            raise StoreError(f"{what}: {uri} holds no published model ({source}/{MARKER} "
                             "missing): the publish step has not finished")
        shutil.copytree(source, scratch)
    elif uri.startswith("s3://"):
        with s3(uri, what, credentials) as fs:
            if not fs.exists(f"{uri}/{MARKER}"):
                raise StoreError(f"{what}: {uri} holds no published model ({MARKER} missing): "
                                 "the publish step has not finished")
            scratch.mkdir(parents=True)
            for key in fs.find(uri):
                relative = key[len(uri[len("s3://"):]):].lstrip("/")
                local = scratch / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(key, str(local))
    else:
        raise StoreError(f"{what}: {uri} is not an s3:// or pvc:// location")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(scratch, dest)
    files = _files(dest)
    return {"skipped": False, "files": len(files),
            "bytes": sum(p.stat().st_size for p in files)}
