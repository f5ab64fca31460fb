"""The evaluate step: score every kept task on its eval split and decide qualification.

    python -m multitask_trainer evaluate --workspace DIR

Classification: each label's log-likelihood given the prompt (label tokens + EOS, summed) is
computed and the best label wins, so the model can only answer a label of the task. Generation:
greedy decoding, then exact match, ROUGE-L and chrF. A task's model is the last stage of the
plan that trained it (stage2, or stage2-GROUP with all-as-adapters). Its baseline is
`baseline.score`, or else the score of its trained single-task baseline (baseline-TASK), and it
qualifies when score >= recipe.qualifyThreshold x baseline. Writes eval/results.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multitask_operator.api import MultiTaskModelSpec, Plan
from multitask_operator.api.results import EvalResults, ProgressEvent, TaskResult
from multitask_operator.workspace import Workspace, publish

from . import metrics
from .confidence import interval, majority, paired_margin
from .encoding import PromptEncoder
from .errors import TrainerError
from .modelio import load_stage
from .prepare import load_manifest, read_split

BATCH_ROWS = 32  # sequences per forward pass; eval sets are small next to training
PROMPT_BATCH = 16  # prompts per shared pass in classification scoring
PROGRESS_EVERY_S = 5.0  # at most one progress line this often (and one at the end)
CALIBRATION = 16  # inputs of a task scored in both fp32 and bf16 (checked_scores)
CHECK_FACTOR = 4.0  # margin = this x the largest bf16 error seen on them ...
MIN_MARGIN = 1.0  # ... and at least this many nats


class Progress:
    """Progress lines of the evaluate step (the training stages' format, stage `evaluate`), so
    that `mtm run` and the operator's status show how far it is and when it ends."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.start = self.last = time.monotonic()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        left = max(self.total - self.done, 0)
        print(ProgressEvent(stage="evaluate", step=self.done, total_steps=self.total,
                            percent=round(100.0 * min(self.done / max(self.total, 1), 1.0), 1),
                            eta_seconds=round(left / rate, 1) if rate else None).to_line(),
              flush=True)


def _prompt(encoder: PromptEncoder, instruction: str, text: str, room: int) -> list[int]:
    ids = encoder.prompts(instruction, [text])[0]
    budget = encoder.max_length - room
    return ids if len(ids) <= budget else encoder.fit_prompt(instruction, text, budget)


def classify(model, encoder: PromptEncoder, instruction: str, inputs: Sequence[str],
             labels: Sequence[str], progress: Progress | None = None,
             fast: Any = None) -> list[str]:
    """The most likely label of each input, scoring only the task's labels (with a bf16 copy of
    the model, `fast`, when given: see checked_scores)."""
    if fast is None or len(labels) < 2:
        scores = label_scores(model, encoder, instruction, inputs, labels, progress)
    else:
        scores = checked_scores(model, fast, encoder, instruction, inputs, labels, progress)
    return [labels[j] for j in scores.argmax(dim=1).tolist()]


def checked_scores(model, fast, encoder: PromptEncoder, instruction: str,
                   inputs: Sequence[str], labels: Sequence[str],
                   progress: Progress | None = None) -> Any:
    """label_scores from `fast`, a bf16 copy of the fp32 `model`, with the full-precision
    answer kept: every input whose two best labels are closer than a margin is scored again in
    fp32. The first CALIBRATION inputs are scored both ways; the margin is CHECK_FACTOR x the
    largest difference seen there, and at least MIN_MARGIN nats. Since the answer can only
    change when the two labels' errors together exceed the gap between them, an input's
    answer differs from fp32's only if bf16 errs on it by more than twice what it did on any
    calibration input. On a CPU with AVX512-BF16 the bf16 pass is ~1.9x faster (SmolLM2; the
    largest error on real eval sets was 0.35 nats, benchmarks/eval_speed.py)."""
    import torch

    head, tail = list(inputs[:CALIBRATION]), list(inputs[CALIBRATION:])
    exact = label_scores(model, encoder, instruction, head, labels, progress)
    seen = (exact - label_scores(fast, encoder, instruction, head, labels).float()).abs()
    margin = max(MIN_MARGIN, CHECK_FACTOR * float(seen.max()) if head else MIN_MARGIN)
    rest = label_scores(fast, encoder, instruction, tail, labels, progress).float()
    if tail:
        best = rest.topk(2, dim=1).values
        close = (best[:, 0] - best[:, 1] < margin).nonzero().flatten().tolist()
        if close:
            rest[close] = label_scores(model, encoder, instruction, [tail[i] for i in close],
                                       labels)
    return torch.cat([exact, rest])


def fast_copy(model: Any, device: str) -> Any:
    """A bf16 copy of an fp32 model for checked_scores, where bf16 is fast: a CPU with
    AVX512-BF16 or AMX (oneDNN's bf16 kernels). None elsewhere (a GPU evaluates in bf16
    already) or when MTM_EVAL_BF16=0."""
    import copy
    import os

    import torch

    if device != "cpu" or os.environ.get("MTM_EVAL_BF16", "1") == "0":
        return None
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    if not any(getattr(torch.cpu, name, lambda: False)() for name in probes):
        return None
    return copy.deepcopy(model).to(torch.bfloat16).eval()


def label_scores(model, encoder: PromptEncoder, instruction: str, inputs: Sequence[str],
                 labels: Sequence[str], progress: Progress | None = None) -> Any:
    """log p(label | prompt), summed over the label's tokens and EOS, for every input and
    label (a tensor inputs x labels), computed with as little work as gives the same numbers:

    - the prompts' common prefix (chat template, system prompt, instruction: a third of a
      ~100-token prompt) is run once per batch and its KV cache shared by the batch's rows;
    - each prompt's own tokens are run once, in batches of prompts of similar length (sorted,
      so that little is padding), and that KV cache is reused by a batch of the labels'
      continuations instead of a pass per (prompt, label);
    - the LM head and log-softmax run only at the positions that predict a label token (the
      head over the whole vocabulary is the costly part at each position).

    Every token keeps the position it has in the unpadded prompt + label (explicit
    position_ids), so the scores are those of `label_scores_rows`, the full-pass form
    (tests/trainer/test_eval_speed.py checks the two agree)."""
    import torch

    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings()
    if base is None or head is None:
        return label_scores_rows(model, encoder, instruction, inputs, labels)
    label_ids = encoder.targets(list(labels))
    room = max(len(ids) for ids in label_ids)
    device = next(model.parameters()).device
    # Continuations: label token k (k >= 1) is predicted at continuation position k - 1.
    pad = encoder.tokenizer.pad_token_id
    continuation = torch.full((len(labels), max(room - 1, 1)), pad, dtype=torch.long)
    rows, cols, targets = [], [], []
    for j, t in enumerate(label_ids):
        continuation[j, : len(t) - 1] = torch.tensor(t[:-1], dtype=torch.long)
        for k in range(1, len(t)):
            rows.append(j)
            cols.append(k - 1)
            targets.append(t[k])
    first = torch.tensor([t[0] for t in label_ids])
    table = torch.empty((len(inputs), len(labels)))
    n_labels, width_c = len(labels), continuation.shape[1]
    prompts = [_prompt(encoder, instruction, text, room) for text in inputs]
    shared = common_prefix(prompts)
    prefix = torch.tensor([prompts[0][:shared] if prompts else []], dtype=torch.long,
                          device=device)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), max(1, PROMPT_BATCH)):
        chunk = order[start : start + PROMPT_BATCH]
        b = len(chunk)
        lengths = torch.tensor([len(prompts[i]) for i in chunk])
        width = int(lengths.max()) - shared
        # The prompts' own tokens, left-padded so that every prompt ends at the last column.
        ids = torch.full((b, width), pad, dtype=torch.long)
        mask = torch.zeros((b, shared + width), dtype=torch.long)
        positions = torch.zeros((b, width), dtype=torch.long)
        mask[:, :shared] = 1
        for r, i in enumerate(chunk):
            own = prompts[i][shared:]
            ids[r, width - len(own):] = torch.tensor(own, dtype=torch.long)
            mask[r, shared + width - len(own):] = 1
            positions[r, width - len(own):] = torch.arange(shared, shared + len(own))
        with torch.no_grad():
            cache = None
            if shared:
                cache = returned_cache(base(input_ids=prefix, use_cache=True))
                cache.batch_repeat_interleave(b)
            out = base(input_ids=ids.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), use_cache=True,
                       **({cache_argument(base): cache} if cache is not None else {}))
            last = head(out.last_hidden_state[:, -1]).float()
            scores = torch.log_softmax(last, dim=-1)[:, first.to(device)].cpu()  # (b, labels)
            if rows:
                cache = returned_cache(out)
                cache.batch_repeat_interleave(n_labels)  # row r * labels + j: prompt r, label j
                full = torch.cat([mask.repeat_interleave(n_labels, dim=0),
                                  torch.ones((b * n_labels, width_c), dtype=torch.long)], dim=1)
                after = (lengths.unsqueeze(1) + torch.arange(width_c)).repeat_interleave(
                    n_labels, dim=0)  # each label right after its own prompt
                hidden = base(input_ids=continuation.repeat(b, 1).to(device),
                              attention_mask=full.to(device), position_ids=after.to(device),
                              use_cache=False, **{cache_argument(base): cache}).last_hidden_state
                label_rows = torch.tensor(rows)
                at_rows = (torch.arange(b).unsqueeze(1) * n_labels + label_rows).reshape(-1)
                at_cols = torch.tensor(cols).repeat(b)
                logprobs = torch.log_softmax(head(hidden[at_rows, at_cols]).float(), dim=-1)
                gathered = logprobs[torch.arange(len(at_rows)),
                                    torch.tensor(targets).repeat(b)].cpu().reshape(b, -1)
                for r in range(b):
                    scores[r] = scores[r].index_add(0, label_rows, gathered[r])
        table[torch.tensor(chunk)] = scores
        if progress is not None:
            progress.advance(b)
    return table


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every prompt shares, leaving each at least one of its own (the
    position that predicts the label's first token)."""
    if not prompts:
        return 0
    shortest = min(len(p) for p in prompts)
    first = prompts[0]
    n = shortest - 1
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def returned_cache(output: Any) -> Any:
    """The KV cache a forward returned, under either of its names."""
    return getattr(output, "cache", None) or output.past_key_values


def cache_argument(module: Any) -> str:
    """The name under which a model's forward takes its KV cache (transformers renamed
    `past_key_values` to `cache`)."""
    import inspect

    return "cache" if "cache" in inspect.signature(module.forward).parameters else (
        "past_key_values")


def label_scores_rows(model, encoder: PromptEncoder, instruction: str, inputs: Sequence[str],
                      labels: Sequence[str]) -> Any:
    """`label_scores` with each (input, label) pair a full forward pass and log-probabilities
    at every position: the same numbers, the slow way (kept as the reference)."""
    import torch

    label_ids = encoder.targets(list(labels))
    room = max(len(ids) for ids in label_ids)
    rows = [(i, j, _prompt(encoder, instruction, text, room), label_ids[j])
            for i, text in enumerate(inputs) for j in range(len(labels))]
    scores = torch.full((len(inputs), len(labels)), float("-inf"))
    pad = encoder.tokenizer.pad_token_id
    device = next(model.parameters()).device
    for start in range(0, len(rows), BATCH_ROWS):
        chunk = rows[start : start + BATCH_ROWS]
        width = max(len(p) + len(t) for _, _, p, t in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (_, _, p, t) in enumerate(chunk):
            ids[r, : len(p) + len(t)] = torch.tensor(p + t)
            mask[r, : len(p) + len(t)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        for r, (i, j, p, t) in enumerate(chunk):
            # Token k of the label is predicted at position len(p) + k - 1.
            positions = torch.arange(len(p) - 1, len(p) + len(t) - 1)
            scores[i, j] = logprobs[r, positions, torch.tensor(t)].sum()
    return scores


def generate(model, encoder: PromptEncoder, instruction: str, inputs: Sequence[str],
             max_new_tokens: int, progress: Progress | None = None) -> list[str]:
    """Greedy decoding of each input's answer, batched with left padding (prompts of similar
    length together, so that little of a batch is padding)."""
    import torch

    tok = encoder.tokenizer
    device = next(model.parameters()).device
    prompts = [_prompt(encoder, instruction, text, max_new_tokens) for text in inputs]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers = [""] * len(prompts)
    for start in range(0, len(order), BATCH_ROWS):
        at = order[start : start + BATCH_ROWS]
        chunk = [prompts[i] for i in at]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, p in enumerate(chunk):
            ids[r, width - len(p) :] = torch.tensor(p)
            mask[r, width - len(p) :] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for i, row in zip(at, out[:, width:].tolist(), strict=True):
            answers[i] = tok.decode(row, skip_special_tokens=True).strip()
        if progress is not None:
            progress.advance(len(chunk))
    return answers


@dataclass
class Scored:
    """A task's metrics on its eval split, with the answers they were computed from."""

    metrics: dict[str, float]
    predicted: list[str]
    gold: list[str]


def score_task(model, encoder: PromptEncoder, spec: MultiTaskModelSpec, task: str,
               labels: Sequence[str] | None, rows: list[dict[str, str]],
               progress: Progress | None = None, fast: Any = None) -> Scored:
    definition = spec.task(task)
    inputs = [r["input"] for r in rows]
    gold = [r["output"] for r in rows]
    if definition.type == "classification":
        if not labels:
            raise TrainerError(f"task {task}: a classification task without labels in the "
                               "manifest; run prepare again")
        predicted = classify(model, encoder, definition.instruction, inputs, labels, progress,
                             fast)
    else:
        # Room for the longest reference plus a margin, within the context window.
        longest = max(len(t) for t in encoder.targets(gold))
        room = min(longest + 8, encoder.max_length // 2)
        predicted = generate(model, encoder, definition.instruction, inputs, room, progress)
    return Scored(metrics.compute(str(definition.type), predicted, gold), predicted, gold)


def _confidence(spec: MultiTaskModelSpec, ws: Workspace, task: str, metric: str,
                unified: Scored | None, baseline: Scored | None) -> dict[str, Any]:
    """The score's and the trained baseline's 95% intervals (same resamples) and, for a
    classification task, the majority-class score."""
    out: dict[str, Any] = {}
    seed = spec.training.seed
    if unified is not None:
        out["score_interval"] = list(interval(metric, unified.predicted, unified.gold, seed,
                                              task))
    if baseline is not None:
        out["baseline_interval"] = list(interval(metric, baseline.predicted, baseline.gold,
                                                 seed, task))
    if spec.task(task).type == "classification" and unified is not None:
        train = [r["output"] for r in read_split(ws, task, "train")]
        out["majority"] = majority(metric, train, unified.gold)
    return out


def _margin(spec: MultiTaskModelSpec, task: str, metric: str, threshold: float,
            baseline: float, confidence: dict[str, Any], unified: Scored,
            trained: Scored | None) -> float:
    """The non-inferiority margin: the lower 95% bound of score - threshold x baseline, from
    a bootstrap paired over the eval examples for a trained baseline, and from the score's
    interval for a baseline given as a number."""
    if trained is not None:
        return paired_margin(metric, unified.predicted, trained.predicted, unified.gold,
                             threshold, spec.training.seed, task)
    return round(confidence["score_interval"][0] - threshold * baseline, 4)


def _load(spec: MultiTaskModelSpec, ws: Workspace, stage: str, device: str):
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = load_stage(spec, ws, stage, dtype, trainable=False)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()  # one matmul per layer instead of base + adapter
    return model.to(device).eval()


def evaluate(spec: MultiTaskModelSpec, ws: Workspace, plan: Plan, cpu: bool = False
             ) -> EvalResults:
    import torch
    from transformers import AutoTokenizer

    if ws.evaluated():
        return EvalResults.model_validate(json.loads(ws.eval_results_file.read_text()))
    manifest = load_manifest(ws)["tasks"]
    device = "cuda" if torch.cuda.is_available() and not cpu else "cpu"
    stage_of: dict[str, str] = {}
    for stage in plan.stages:
        if stage.kind != "baseline":
            stage_of.update({t: stage.name for t in stage.tasks})  # later stages win

    def run(stage: str, tasks: list[str]) -> dict[str, Scored]:
        model = _load(spec, ws, stage, device)
        fast = fast_copy(model, device) if any(manifest[t]["labels"] for t in tasks) else None
        tokenizer = AutoTokenizer.from_pretrained(ws.final_dir(stage))
        encoder = PromptEncoder(tokenizer, spec.training.max_seq_length)
        return {t: score_task(model, encoder, spec, t, manifest[t]["labels"],
                              read_split(ws, t, "eval"), progress, fast) for t in tasks}

    baselines = [s.tasks[0] for s in plan.stages if s.kind == "baseline"]
    progress = Progress(sum(manifest[t]["eval"] for t in [*stage_of, *baselines]))

    scored: dict[str, Scored] = {}
    for stage_name in dict.fromkeys(stage_of.values()):
        scored.update(run(stage_name, [t for t, s in stage_of.items() if s == stage_name]))
    scores = {t: s.metrics for t, s in scored.items()}
    baseline_runs: dict[str, Scored] = {}
    for stage in plan.stages:
        if stage.kind == "baseline":
            only = stage.tasks[0]
            baseline_runs[only] = run(stage.name, [only])[only]
    trained_baselines = {t: s.metrics[spec.task(t).effective_metric]
                         for t, s in baseline_runs.items()}

    threshold = spec.recipe.qualify_threshold
    results = []
    for planned in plan.tasks:
        task = spec.task(planned.name)
        metric = task.effective_metric
        baseline, source = task.baseline.score, "spec"
        if baseline is None:
            baseline = trained_baselines.get(task.name)
            source = "trained" if baseline is not None else "none"
        score = scores[task.name][metric] if task.name in scores else None
        qualified = bool(score is not None and baseline is not None
                         and score >= threshold * baseline)
        confidence = _confidence(spec, ws, task.name, metric, scored.get(task.name),
                                 baseline_runs.get(task.name) if source == "trained" else None)
        margin = None
        if spec.recipe.qualify_rule == "nonInferiority" and score is not None and (
                baseline is not None):
            margin = _margin(spec, task.name, metric, threshold, baseline, confidence,
                             scored[task.name], baseline_runs.get(task.name)
                             if source == "trained" else None)
            qualified = margin >= 0
        if not planned.included:
            reason = planned.reason
        elif baseline is None:
            reason = "no baseline.score and no trained baseline to compare with"
        elif not qualified and margin is not None:
            reason = (f"the lower 95% bound of score - {threshold} x baseline is {margin:.4f}, "
                      "below 0 (qualifyRule nonInferiority)")
        elif not qualified:
            reason = f"score {score:.4f} is below {threshold} x baseline {baseline:.4f}"
        else:
            reason = None
        results.append(TaskResult(
            name=task.name, type=str(task.type), included=planned.included, metric=metric,
            score=score, metrics=scores.get(task.name, {}), baseline=baseline,
            baseline_source=source,
            ratio=score / baseline if score is not None and baseline else None,
            qualified=qualified, examples=manifest[task.name]["eval"],
            stage=stage_of.get(task.name), reason=reason, margin=margin, **confidence,
        ))
    outcome = EvalResults(qualify_threshold=threshold, tasks=results)
    with publish(ws.eval_dir, {"qualified": outcome.qualified}) as scratch:
        (scratch / "results.json").write_text(json.dumps(outcome.to_wire(), indent=2) + "\n")
    return outcome
