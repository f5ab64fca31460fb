"""`mtm status`: what a MultiTaskModel's status says, for people: where each task's traffic is,
how its handover goes, and what waits for an approval (with the exact approval to give).

    kubectl get mtm support-assistant -o yaml | mtm status -
    mtm status model-object.json

It reads the object kubectl prints (JSON or YAML), so it needs no credentials of its own: any
kubectl context, OIDC plugin or Argo CD export works.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError

from ..api.resource import APPROVE_ANNOTATION
from ..api.status import MultiTaskModelStatus


def _read(file: str) -> dict[str, Any]:
    name = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as error:
        raise click.ClickException(f"{name}: cannot read it: {error.strerror}") from None
    try:
        obj = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise click.ClickException(f"{name}: not JSON or YAML: {error}") from None
    if not isinstance(obj, dict) or obj.get("kind") != "MultiTaskModel":
        kind = obj.get("kind") if isinstance(obj, dict) else type(obj).__name__
        raise click.ClickException(
            f"{name}: expected a MultiTaskModel object (kubectl get mtm NAME -o yaml), got "
            f"{kind or 'an object without kind'}")
    return obj


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}%"


def describe(obj: dict[str, Any]) -> list[str]:
    """The lines `mtm status` prints for a MultiTaskModel object."""
    name = (obj.get("metadata") or {}).get("name", "?")
    try:
        status = MultiTaskModelStatus.model_validate(obj.get("status") or {})
    except ValidationError as error:
        raise click.ClickException(f"{name}: its status does not fit this version of mtm: "
                                   f"{error.errors()[0]['msg']}") from None
    lines = [f"{name}: {status.phase}" + (f", revision {status.revision}"
                                          if status.revision else ""),
             f"  {status.message or 'no message yet'}"]
    if status.serving is not None and status.serving.cost_saving:
        lines.append(f"  serving revision {status.serving.revision}; GPUs "
                     f"{status.serving.gpus_before} -> {status.serving.gpus_after} "
                     f"(saving {status.serving.cost_saving})")
    if status.tasks:
        lines.append("")
        lines.append(f"  {'task':<16} {'qualified':<9} {'served by':<34} handover")
    waiting = []
    for task in status.tasks:
        qualified = "" if task.qualified is None else ("yes" if task.qualified else "no")
        handover = ""
        if task.rollout is not None:
            r = task.rollout
            handover = f"{r.state} {r.weight}%"
            if r.requests is not None:
                handover += f", {r.requests} compared, agreement {_pct(r.agreement)}"
            if r.reason:
                handover += f" ({r.reason})"
        if task.awaiting_approval:
            waiting.append(task.name)
            handover = "awaiting approval"
        elif task.cutover_blocked:
            handover = f"not cut over: {task.cutover_blocked}"
        lines.append(f"  {task.name:<16} {qualified:<9} {task.served_by or '':<34} {handover}"
                     .rstrip())
    if waiting and status.revision:
        lines += ["", f"Waiting for an approval of revision {status.revision}: "
                  f"{', '.join(waiting)}. In Git (spec.serving.approvals):",
                  f"  - revision: {status.revision}", f"    tasks: [{', '.join(waiting)}]",
                  "or with kubectl:",
                  f"  kubectl annotate mtm {name} --overwrite "
                  f"{APPROVE_ANNOTATION}={status.revision}:{','.join(waiting)}"]
    return lines


@click.command()
@click.argument("file", default="-")
def status(file: str) -> None:
    """Explain a MultiTaskModel's status (read from FILE, or stdin with -)."""
    click.echo("\n".join(describe(_read(file))))
