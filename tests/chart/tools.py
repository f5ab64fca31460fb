"""Finding and running the real binaries the chart tests need: helm v4 and lua5.1.

They come from `scripts/install-tools.sh` (`make tools`) into .tools/bin, or from PATH. Missing
tools skip the tests locally, with the command that installs them; under CI (CI=true) they fail,
so that a broken install can never pass as a green run.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

CHART = REPO / "charts" / "multitask-operator"
ARGOCD = REPO / "charts" / "argocd"
VALUE_SETS_DIR = Path(__file__).parent / "values"
# Every value set the chart is rendered, validated and RBAC-checked with; the file names are
# what the docs and the closing comment call them.
VALUE_SETS = sorted(p.stem for p in VALUE_SETS_DIR.glob("*.yaml"))
RELEASE = "mto"
RELEASE_NAMESPACE = "mto-system"
KUBE_VERSION = "1.35.0"


def find_tool(name: str) -> str:
    """The path of `name` from .tools/bin or PATH; skip (locally) or fail (CI) without it."""
    local = REPO / ".tools" / "bin" / name
    path = str(local) if os.access(local, os.X_OK) else shutil.which(name)
    if path:
        return path
    reason = f"{name} not found in .tools/bin or PATH; run `make tools` (scripts/install-tools.sh)"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason}. CI=true, so the chart tests fail rather than skip.")
    pytest.skip(reason)


def helm(*args: str, check: bool = True, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run helm with a private, empty config so that the user's repositories and plugins
    cannot change what the tests see."""
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/nonexistent-helm-cache",
        "HELM_CONFIG_HOME": "/nonexistent-helm-config",
        "HELM_DATA_HOME": "/nonexistent-helm-data",
        "KUBECONFIG": "/dev/null",
    }
    result = subprocess.run(
        [find_tool("helm"), *args], capture_output=True, text=True, env=env, timeout=60, cwd=cwd
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
    return result


def parse_manifests(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@functools.cache
def _render(value_set: str) -> str:
    values = VALUE_SETS_DIR / f"{value_set}.yaml"
    return helm(
        "template", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE,
        "--kube-version", KUBE_VERSION, "--values", str(values),
    ).stdout


def render(value_set: str) -> list[dict]:
    """The chart's templates rendered with tests/chart/values/<value_set>.yaml (a fresh copy)."""
    return parse_manifests(_render(value_set))


def load_values(value_set: str) -> dict:
    return yaml.safe_load((VALUE_SETS_DIR / f"{value_set}.yaml").read_text()) or {}


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, rendered {len(found)}"
    return found[0]


def merge_values(defaults: dict, overrides: dict) -> dict:
    """Helm's coalescing of a values file over the chart's defaults (maps merge, rest replace)."""
    merged = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged


def watched(values: dict) -> list[str]:
    """The namespaces an install handles: watchNamespaces, else the release's own namespace
    unless clusterWide is chosen ([]: every namespace)."""
    return values.get("watchNamespaces") or ([] if values.get("clusterWide")
                                             else [RELEASE_NAMESPACE])
