"""Which training revisions a model keeps, and deleting the rest (spec.training.workspace.
keepRevisions).

Kept: the `keepRevisions` most recent revisions (by their first Job's creation), the one being
trained always among them, and the revision being served on top. The older ones lose their Jobs
(and their pods), their spec ConfigMaps and, at the next prepare step (which is given the list
to keep: `--keep-revisions`), their folders on the workspace: that step is the only writer of
new folders and the one Job that mounts the workspace read-write while nothing else trains.
Pure: from the observed Jobs and the last status.
"""

from __future__ import annotations

from ..api.spec import MultiTaskModelSpec
from ..render import pod
from .actions import Absent, Action, Delete, Event
from .observed import Observed


def keep(obs: Observed, spec: MultiTaskModelSpec, revision: str) -> list[str]:
    """The revisions to keep, the current one first."""
    first: dict[str, str] = {}
    for job in obs.jobs:
        if job.revision and job.revision != revision:
            created = job.created or ""
            first[job.revision] = min(first.get(job.revision, created), created)
    newest = sorted(first, key=lambda r: (first[r], r), reverse=True)
    kept = [revision] + newest[:spec.training.workspace.keep_revisions - 1]
    serving = (obs.status.get("serving") or {}).get("revision")
    if serving and serving not in kept:
        kept.append(serving)
    return kept


def actions(obs: Observed, kept: list[str]) -> tuple[list[Action], list[Event]]:
    """Delete the Jobs and spec ConfigMaps of every revision not kept (once: then they are
    gone), with an Event naming the revisions."""
    stale = sorted({j.revision for j in obs.jobs if j.revision and j.revision not in kept})
    if not stale:
        return [], []
    out: list[Action] = [Delete(j.api_version, j.kind, j.name) for j in sorted(
        obs.jobs, key=lambda j: j.name) if j.revision in stale]
    out += [Absent("v1", "ConfigMap", pod.spec_configmap_name(obs.name, r), obs.uid)
            for r in stale]
    event = Event("Normal", "RevisionsCleanedUp",
                  f"deleted the Jobs of revisions {', '.join(stale)} (keeping "
                  f"{', '.join(kept)}); their workspace folders go at the next prepare step")
    return out, [event]
