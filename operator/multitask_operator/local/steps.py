"""Which trainer steps a local run executes, in order, and which are already finished.

prepare always runs: it is a no-op on a prepared workspace and refuses one prepared for a
different spec. After it, plan.json says which stages exist (stage 1 may be skipped, baselines
may be planned), and the workspace's completion markers say which are done.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..api.status import Plan
from ..workspace import Workspace


@dataclass(frozen=True)
class Step:
    name: str  # what a person sees: prepare, stage1, baseline-intent, evaluate, export
    args: tuple[str, ...]  # the trainer's arguments after `python -m multitask_trainer`
    total_steps: int | None = None  # optimizer steps, for a progress bar

    @property
    def is_training(self) -> bool:
        return self.args[0] == "train"


def prepare_step(spec_file: str) -> Step:
    return Step("prepare", ("prepare", "--spec", spec_file))


def remaining_steps(ws: Workspace, plan: Plan) -> tuple[list[Step], list[Step]]:
    """(done, to do) among the steps after prepare, in pipeline order."""
    steps = [Step(stage.name, ("train", "--stage", stage.name), stage.steps)
             for stage in plan.stages]
    steps += [Step("evaluate", ("evaluate",)), Step("export", ("export",))]

    def finished(step: Step) -> bool:
        if step.is_training:
            return ws.stage_done(step.name)
        return ws.evaluated() if step.name == "evaluate" else ws.exported()

    done = [s for s in steps if finished(s)]
    # A later step is only trusted when everything before it is finished too.
    first_open = next((i for i, s in enumerate(steps) if not finished(s)), len(steps))
    return done[:first_open], steps[first_open:]
