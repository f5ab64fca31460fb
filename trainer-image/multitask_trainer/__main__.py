"""The program every training Job runs: one step of the recipe per invocation.

    python -m multitask_trainer prepare  --workspace DIR --spec model.yaml
    python -m multitask_trainer train    --workspace DIR --stage stage1
    python -m multitask_trainer train    --workspace DIR --stage stage2
    python -m multitask_trainer train    --workspace DIR --stage baseline:TASK
    python -m multitask_trainer evaluate --workspace DIR
    python -m multitask_trainer export   --workspace DIR
    python -m multitask_trainer fingerprint --spec model.yaml   # what identifies each task's data
    python -m multitask_trainer publish  --workspace DIR --to s3://BUCKET/PREFIX/REV  # for serving
    accelerate launch --num_processes 8 -m multitask_trainer train --workspace DIR --stage stage2
    torchrun --nnodes 2 --nproc-per-node 8 --node-rank R --master-addr HOST --master-port 29500 \
        -m multitask_trainer train --workspace DIR --stage stage2 [--fsdp]

Every step is idempotent: a finished step is a no-op, an interrupted one resumes (training from
its latest checkpoint) or starts over (the others, which publish their output atomically).
`--spec` is needed by prepare, which stores the resolved spec in the workspace for the rest.
Progress goes to stdout as JSON lines; messages to stderr. Exit code 0 on success, 2 on bad
input (one sentence naming the task and FILE:LINE or field), 1 on a bug. The step's result is
also written, as at most 4 KiB of JSON, to /dev/termination-log when it is writable
(MTM_TERMINATION_LOG overrides the path), where Kubernetes hands it to the operator.

Under torchrun or accelerate launch, the processes of one pod share that file. A success is
written by the pod's local rank 0 only; its summary is global (the loss is averaged over all
ranks), so every node's pod reports the same result and the operator may read any of them. A
failure is written by whichever process fails, and the first failure of this run stays: the
peers of a crashed rank fail next on broken collectives, and that must not hide the cause.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from multitask_operator.api import Plan
from multitask_operator.api.results import EvaluateResult, StepSummary, termination_message
from multitask_operator.workspace import Workspace, remove_revisions

from .errors import TrainerError
from .specfile import load_spec

TERMINATION_LOG_ENV = "MTM_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
STARTED = time.time()  # a failure in the termination log older than this is a previous run's


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m multitask_trainer",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["prepare", "train", "evaluate", "export",
                                         "fingerprint", "publish"])
    parser.add_argument("--workspace", type=Path,
                        help="the shared workspace (every step but fingerprint)")
    parser.add_argument("--spec", type=Path, help="MultiTaskModel YAML (needed by prepare)")
    parser.add_argument("--keep-revisions", metavar="REV,REV",
                        help="prepare: delete the other revision folders beside the workspace "
                             "(revisions/<rev>) once prepared; the operator's cleanup")
    parser.add_argument("--stage", help="train: stage1, stage2, stage2-GROUP or baseline:TASK")
    parser.add_argument("--to", metavar="URI",
                        help="publish: where to copy the export, s3://BUCKET/PREFIX or "
                             "pvc://CLAIM/PATH")
    parser.add_argument("--log-every", type=int, default=10, help="steps between progress lines")
    parser.add_argument("--micro-batch-tokens", type=int,
                        help="most padded tokens in a micro-batch (default min(batchSize, 16) "
                        "x maxSeqLength on GPU, 4 x maxSeqLength on CPU)")
    parser.add_argument("--micro-batch-overhead", type=int,
                        help="cost of one more micro-batch in tokens (default 8 x maxSeqLength "
                        "on GPU, maxSeqLength on CPU)")
    parser.add_argument("--no-packing", dest="packing", action="store_false",
                        help="pad every example of a micro-batch to its longest instead of "
                        "packing examples end to end (multitask_trainer/sampling.py)")
    parser.add_argument("--cpu", action="store_true", help="train on CPU even with a GPU")
    parser.add_argument("--fsdp", action="store_true",
                        help="train: shard the model over the processes with FSDP "
                        "(multitask_trainer/distributed.py)")
    args = parser.parse_args(argv)
    if args.step != "fingerprint" and args.workspace is None:
        parser.error(f"{args.step} needs --workspace DIR")
    if args.step == "fingerprint" and args.spec is None:
        parser.error("fingerprint needs --spec FILE")
    if args.step == "publish" and not args.to:
        parser.error("publish needs --to URI")
    if args.step == "train" and not args.stage:
        parser.error("train needs --stage (stage1, stage2, stage2-GROUP or baseline:TASK)")
    return args


def load_plan(ws: Workspace) -> Plan:
    if not ws.prepared():
        raise TrainerError(f"{ws.root}: not prepared; run the prepare step first")
    return Plan.model_validate(json.loads(ws.plan_file.read_text(encoding="utf-8")))


def run_step(args: argparse.Namespace) -> StepSummary:
    if args.step == "fingerprint":
        from .fingerprint import task_fingerprints
        from .specfile import load_spec_file

        prints = task_fingerprints(load_spec_file(args.spec))
        return StepSummary(step="fingerprint", ok=True,
                           message=f"fingerprinted the data of {len(prints)} tasks",
                           details={"fingerprints": prints})
    ws = Workspace(args.workspace)
    if args.step == "publish":
        return publish_export(ws, args.to)
    spec = load_spec(ws, args.spec)
    details: dict[str, Any]
    if args.step == "prepare":
        from .prepare import prepare

        details = prepare(spec, ws)
        message = "already prepared" if details["skipped"] else (
            f"prepared {len(details['counts'])} tasks; stages: {', '.join(details['stages'])}")
        if args.keep_revisions and ws.root.resolve().parent.name == "revisions":
            keep = {r for r in args.keep_revisions.split(",") if r} | {ws.root.resolve().name}
            details["removedRevisions"] = remove_revisions(ws.root.resolve().parent, keep)
            if details["removedRevisions"]:
                message += f"; deleted old revisions {', '.join(details['removedRevisions'])}"
        return StepSummary(step="prepare", ok=True, message=message, details=details)
    plan = load_plan(ws)
    if args.step == "train":
        from .distributed import request_fsdp
        from .train import TrainOptions, train_stage

        if args.fsdp:
            request_fsdp()  # before accelerate and the model loading read the environment

        options = TrainOptions(log_every=args.log_every, cpu=args.cpu,
                               micro_batch_tokens=args.micro_batch_tokens,
                               micro_batch_overhead=args.micro_batch_overhead,
                               packing=args.packing)
        details = train_stage(spec, ws, plan, args.stage, options)
        verb = "was already trained" if details["skipped"] else "trained"
        return StepSummary(step="train", stage=details.get("stage", args.stage), ok=True,
                           message=f"stage {details.get('stage', args.stage)} {verb}",
                           details=details)
    if args.step == "evaluate":
        from .evaluate import evaluate

        results = evaluate(spec, ws, plan, cpu=args.cpu)
        scores = {t.name: t.score for t in results.tasks if t.score is not None}
        qualified = results.qualified
        return StepSummary(step="evaluate", ok=True,
                           message=f"{len(qualified)} of {len(scores)} tasks qualified",
                           details=EvaluateResult(
                               scores=scores, qualified=qualified,
                               baselines={t.name: t.baseline for t in results.tasks
                                          if t.baseline_source == "trained"},
                               intervals={t.name: _intervals(t) for t in results.tasks
                                          if t.score_interval or t.majority is not None},
                           ).to_details())
    from .export import export

    details = export(spec, ws, plan)
    return StepSummary(step="export", ok=True, message=f"exported to {ws.export_dir}",
                       details=details)


def _intervals(task: Any) -> dict[str, Any]:
    """A task's confidence figures, camelCase, for the operator's status."""
    out = {"scoreInterval": task.score_interval, "baselineInterval": task.baseline_interval,
           "majority": task.majority, "margin": task.margin}
    return {k: v for k, v in out.items() if v is not None}


def publish_export(ws: Workspace, uri: str) -> StepSummary:
    """Copy the finished export to the model storage that serving reads it from."""
    from multitask_operator.objectstore import StoreError, publish

    if not ws.exported():
        raise TrainerError(f"{ws.export_dir}: no finished export to publish; run export first")
    try:
        done = publish(ws.export_dir, uri, "the Secret named by spec.serving.modelStorage.secret")
    except StoreError as err:
        raise TrainerError(str(err)) from None
    verb = "was already published to" if done["skipped"] else "published to"
    return StepSummary(step="publish", ok=True,
                       message=f"the export ({done['files']} files) {verb} {uri}",
                       details={"to": uri, **done})


def _holds_failure(text: str) -> bool:
    try:
        return json.loads(text).get("ok") is False
    except (ValueError, AttributeError):
        return False


def write_termination_log(summary: StepSummary) -> None:
    if summary.ok and os.environ.get("LOCAL_RANK", "0") != "0":
        return  # one writer of a success per pod (set by torchrun and accelerate launch)
    path = os.environ.get(TERMINATION_LOG_ENV, DEFAULT_TERMINATION_LOG)
    try:
        with open(path, "a+", encoding="utf-8") as handle:
            with suppress(OSError):  # a filesystem without locks still gets the message
                fcntl.flock(handle, fcntl.LOCK_EX)  # the pod's other processes may write too
            handle.seek(0)
            if os.fstat(handle.fileno()).st_mtime >= STARTED and _holds_failure(handle.read()):
                return  # a peer failed first in this run: its message is the cause
            handle.seek(0)
            handle.truncate()
            handle.write(termination_message(summary))
    except OSError:
        pass  # not in a pod (or not writable): stdout and the workspace have everything


def quiet_libraries() -> None:
    """Progress bars of weight loading and saving would drown the JSON progress lines."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.step != "prepare":
        quiet_libraries()
    try:
        summary = run_step(args)
    except TrainerError as err:
        print(f"error: {err}", file=sys.stderr)
        write_termination_log(StepSummary(step=args.step, stage=args.stage, ok=False,
                                          message=str(err)))
        return 2
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C, `mtm run` stopping): finished checkpoints stay, so a rerun resumes.
        print(f"error: {args.step} interrupted; run it again to resume", file=sys.stderr)
        write_termination_log(StepSummary(step=args.step, stage=args.stage, ok=False,
                                          message=f"{args.step} interrupted"))
        return 130
    except Exception as err:  # a bug: keep the traceback, but tell the operator too
        write_termination_log(StepSummary(step=args.step, stage=args.stage, ok=False,
                                          message=f"internal error: {type(err).__name__}: {err}"))
        raise
    print(summary.message, file=sys.stderr)
    write_termination_log(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
