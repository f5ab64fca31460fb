"""The install instructions are what the tests render: every command in the docs' code blocks.

    .venv/bin/python -m pytest tests/chart/test_chart_docs.py -q

`helm install` commands run as `helm template` with the same arguments, and every object they
render must be valid; the other helm and kubectl commands must use flags those binaries have and
paths that exist. Covers the chart README, docs/install.md and the top-level README.
"""

from __future__ import annotations

import functools
import re
import shlex
import subprocess

import kubernetes_validate
import pytest

from tests.conftest import REPO

from .tools import KUBE_VERSION, find_tool, helm, parse_manifests

DOCS = [REPO / "charts/multitask-operator/README.md", REPO / "docs/install.md", REPO / "README.md"]
FENCE = re.compile(r"^ *```(?:bash|sh|console)?\n(.*?)^ *```", re.S | re.M)


def doc_commands() -> list[tuple[str, str]]:
    """(file:line, command) for every helm/kubectl line in a fenced code block."""
    found = []
    for path in DOCS:
        if not path.exists():
            continue
        text = path.read_text()
        for block in FENCE.finditer(text):
            first_line = text[: block.start(1)].count("\n") + 1
            for offset, line in enumerate(block.group(1).splitlines()):
                line = line.strip()
                if line.startswith(("helm ", "kubectl ")):
                    found.append((f"{path.relative_to(REPO)}:{first_line + offset}", line))
    return found


COMMANDS = doc_commands()
INSTALLS = [(where, cmd) for where, cmd in COMMANDS if cmd.startswith("helm install ")]


def test_the_docs_show_the_install_variants_the_tests_render() -> None:
    assert len(INSTALLS) >= 4, "the chart README and docs/install.md show several installs"
    assert any("watchNamespaces" in cmd for _, cmd in INSTALLS)
    assert any("replicaCount" in cmd for _, cmd in INSTALLS)


@pytest.mark.parametrize(("where", "command"), INSTALLS, ids=[w for w, _ in INSTALLS])
def test_helm_install_command_renders_valid_objects(where: str, command: str) -> None:
    args = shlex.split(command)[2:]
    objects = parse_manifests(helm("template", *args, "--kube-version", KUBE_VERSION,
                                   cwd=REPO).stdout)
    assert any(obj["kind"] == "Deployment" for obj in objects), where
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            continue  # custom resources: checked in test_chart_render.py
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{where}: {obj['kind']} is invalid: {error.message}")


@functools.cache
def _help(tool: str, subcommand: str) -> str:
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=30)
    text = run([find_tool(tool), subcommand, "--help"]).stdout
    if tool == "kubectl":
        text += run([find_tool(tool), "options"]).stdout  # kubectl's global flags
    return text


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_flags_and_paths_exist(where: str, command: str) -> None:
    words = shlex.split(command)
    tool, subcommand = words[0], words[1]
    usage = _help(tool, subcommand)
    assert f"{tool} {subcommand}" in usage, f"{where}: `{tool} {subcommand}` is not a command"
    for word in words[2:]:
        flag = word.split("=", 1)[0]
        if flag.startswith("--"):
            assert re.search(rf"{re.escape(flag)}\b", usage), f"{where}: {tool} has no {flag}"
        elif word.startswith(("charts/", "tests/", "examples/", "crds/")):
            assert (REPO / word).exists(), f"{where}: {word} does not exist"
