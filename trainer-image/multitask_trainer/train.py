"""The train step: one stage of the recipe (stage1, stage2, stage1-GROUP, baseline-TASK...).

    python -m multitask_trainer train --workspace DIR --stage stage2
    accelerate launch --num_processes 8 -m multitask_trainer train --workspace DIR --stage stage2
    accelerate launch --config_file fsdp.yaml -m multitask_trainer train ...   # FSDP
    torchrun --nnodes N --nproc-per-node G --node-rank R --master-addr HOST \
        -m multitask_trainer train --workspace DIR --stage stage2 [--fsdp]

Single process on CPU or one GPU, DDP or FSDP on many (accelerate decides from its launcher;
`--fsdp` asks for FSDP under a plain torchrun: distributed.py). Every rank computes the same
schedule and the same micro-batches for all ranks (sampling.step_shards) and trains its own.
Shared files (checkpoints but for per-rank RNG states, progress, the final model) are written
by global rank 0 only, so N nodes can share one workspace volume; checkpoints are read by all.
The loop below reads straight down: the schedule fixes every step's examples, each step is
cut into length-bucketed micro-batches whose examples are packed end to end into rows
(sampling.pack_rows), gradients accumulate over them, then clip, optimizer and scheduler step,
checkpoint, log. The loss is summed over target tokens and divided by the
step's target-token count over all ranks, so the gradient is the same however the step is cut
into micro-batches or ranks.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from multitask_operator.api import MultiTaskModelSpec, Plan, StagePlan
from multitask_operator.api.results import ProgressEvent, TrainResult, parse_progress_line
from multitask_operator.workspace import Workspace, publish, read_marker

from .checkpoint import (
    keep_trainable_weights,
    latest_checkpoint,
    load_checkpoint,
    remove_partial,
    save_checkpoint,
)
from .distributed import check_fsdp_active, uses_fsdp
from .encoding import PromptEncoder, TaskTokens
from .errors import TrainerError
from .modelio import load_base, load_stage, load_tokenizer, lora_config
from .prepare import read_split
from .sampling import MixtureSchedule, computed_tokens, micro_batch_rows, step_shards


@dataclass
class TrainOptions:
    """Knobs of the trainer that are not part of the spec, with their defaults."""

    # Most padded tokens (rows x longest row) in one micro-batch: the activation-memory cap.
    # None: min(batchSize, 16) x maxSeqLength on a GPU, i.e. never more than a plain batch
    # padded to maxSeqLength would take (fewer, bigger passes are faster there; an out-of-memory
    # error names this knob), and 4 x maxSeqLength on CPU.
    micro_batch_tokens: int | None = None
    # Fixed cost of one more forward/backward pass, in computed-token equivalents, which a split
    # of a step into micro-batches must save to be worth it (sampling.micro_batches; packed,
    # there is little to save, and a step is mostly one pass). None: 8 x maxSeqLength on a
    # GPU, where a pass of a few thousand tokens costs about as much as a full one (the host
    # issuing kernels is the bound; benchmarks/RESULTS.md); maxSeqLength on CPU, where a pass
    # costs little beyond its tokens.
    micro_batch_overhead: int | None = None
    # Pack each micro-batch's examples end to end into rows (sampling.pack_rows) instead of
    # padding every example to the longest; off, or a model whose attention does not keep
    # packed examples apart (checked at start-up), pads.
    packing: bool = True
    log_every: int = 10  # steps between progress lines; checkpoints and the end always log
    keep_checkpoints: int = 2  # older checkpoints are deleted once a newer one is complete
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    cpu: bool = False  # train on CPU even when a GPU is visible


def stage_by_name(plan: Plan, name: str) -> StagePlan:
    """`name` as given on the command line: a stage of the plan, or baseline:TASK."""
    if name.startswith("baseline:"):
        name = "baseline-" + name.split(":", 1)[1]
    for stage in plan.stages:
        if stage.name == name:
            return stage
    known = ", ".join(s.name for s in plan.stages) or "none"
    raise TrainerError(f"--stage {name}: not a stage of the plan; the plan has: {known}")


def stage_seed(seed: int, stage: str) -> int:
    # Stages draw different mixtures even with the same spec seed.
    return (seed + zlib.crc32(stage.encode())) % (2**31)


def load_stage_tokens(ws: Workspace, spec: MultiTaskModelSpec, stage: StagePlan,
                      encoder: PromptEncoder) -> list[TaskTokens]:
    data = []
    for name in stage.tasks:
        rows = read_split(ws, name, "train")
        instruction = spec.task(name).instruction
        data.append(encoder.encode(instruction, [r["input"] for r in rows],
                                   [r["output"] for r in rows]))
    return data


def collate(data: list[TaskTokens], task_ids: np.ndarray, example_ids: np.ndarray,
            rows: list[np.ndarray], pad_id: int, packed: bool):
    """Right-padded input_ids and labels (-100 on prompts and padding) for `rows`, each a run
    of examples laid end to end; padded: one example a row and an attention_mask; packed:
    position_ids restarting at every example and no mask (see sampling.pack_rows)."""
    import torch

    seqs = [[data[task_ids[p]].example(example_ids[p]) for p in row] for row in rows]
    width = max(sum(len(ids) for ids, _ in row) for row in seqs)
    input_ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    labels = np.full((len(seqs), width), -100, dtype=np.int64)
    attention = np.zeros((len(seqs), width), dtype=np.int64)
    position_ids = np.zeros((len(seqs), width), dtype=np.int64)
    for r, row in enumerate(seqs):
        at = 0
        for ids, prompt_len in row:
            n = len(ids)
            input_ids[r, at:at + n] = ids
            labels[r, at + prompt_len:at + n] = ids[prompt_len:]
            position_ids[r, at:at + n] = np.arange(n)
            at += n
        attention[r, :at] = 1
        position_ids[r, at:] = np.arange(width - at)  # the padding: a block of its own
    arrays = {"input_ids": input_ids, "labels": labels}
    if packed:
        arrays["position_ids"] = position_ids
    else:
        arrays["attention_mask"] = attention
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def run_micro_batches(model, accelerator, data: list[TaskTokens], task_ids: np.ndarray,
                      example_ids: np.ndarray, micro_batches: list[list[np.ndarray]],
                      pad_id: int, items: float, fsdp: bool = False):
    """Forward and backward over one step's micro-batches, each given as its rows
    (sampling.micro_batch_rows); returns the summed loss tensor.

    `items` is the step's target tokens over all ranks divided by the number of ranks: the loss
    is summed over target tokens and divided by it, so that DDP's gradient averaging over
    ranks yields the mean over all the step's target tokens. An empty micro-batch (FSDP only,
    see step_shards) runs the rank's first example with weight 0: it joins the collectives of
    one more pass and adds nothing to the gradient."""
    import torch

    step_loss = torch.zeros((), device=accelerator.device)
    for i, rows in enumerate(micro_batches):
        weight = 1.0 if rows else 0.0
        rows = rows or [micro_batches[0][0][:1]]
        batch = collate(data, task_ids, example_ids, rows, pad_id,
                        packed=any(len(row) > 1 for row in rows))
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        # DDP all-reduces gradients only after the last micro-batch's backward. FSDP
        # reduce-scatters after every one instead: no_sync would keep whole unsharded
        # gradients on every rank, the memory FSDP is there to save.
        last = i == len(micro_batches) - 1
        with nullcontext() if fsdp or last else accelerator.no_sync(model):
            # use_cache=False: training needs no KV cache, and with one transformers does
            # not look for packed sequences in position_ids.
            loss = target_loss(model, batch, items)
            accelerator.backward(loss * weight)
        step_loss += loss.detach() * weight
    return step_loss


def target_loss(model, batch: dict[str, Any], items: float):
    """The summed cross-entropy of the target tokens divided by `items`: transformers' causal
    LM loss, with the LM head applied only at the positions that predict a target token (a
    boolean `logits_to_keep`). A classification target is one to three tokens of a ~100-token
    example, and the head (vocabulary x hidden per position) is a large part of the model's
    work: the rest of the positions skip it. Models or transformers versions without a mask
    form of `logits_to_keep` get the full computation."""
    import torch

    if not KEEP_MASK_SUPPORTED or not _takes_keep(model):
        return model(**batch, use_cache=False, num_items_in_batch=items).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    labels = batch["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100  # position p predicts token p + 1
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    targets = labels[:, 1:][keep[:, :-1]]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), targets, reduction="sum") / items


def _takes_keep(model) -> bool:
    """Whether the model under the DDP/FSDP and PEFT wrappers has `logits_to_keep`."""
    import inspect

    inner = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def _keep_mask_supported() -> bool:
    """Whether transformers takes a boolean (batch, sequence) `logits_to_keep` (5.x does)."""
    try:
        from transformers.modeling_utils import slice_logits_to_keep
    except ImportError:
        return False
    return "boolean" in (slice_logits_to_keep.__doc__ or "")


KEEP_MASK_SUPPORTED = _keep_mask_supported()


def decide_packing(accelerator, model) -> bool:
    """Rank 0 checks the model (packing_isolates) and tells the others: under FSDP with
    FSDP_CPU_RAM_EFFICIENT_LOADING only rank 0 holds real weights before sharding, the other
    ranks' are on the meta device. Weights that cannot be checked are not trusted: pad."""
    from accelerate.utils import broadcast_object_list

    decision: list[bool | None] = [None]
    if accelerator.is_main_process:
        real = all(p.device.type != "meta" for p in model.parameters())
        decision[0] = real and packing_isolates(model)
    if accelerator.num_processes > 1:
        broadcast_object_list(decision, from_process=0)
    return bool(decision[0])


def packing_isolates(model) -> bool:
    """Whether the model keeps packed examples apart: a short sequence's log-probabilities
    packed behind another (position ids restarting) match those it gets alone, while without
    the restart (one long sequence) they visibly change. A model whose attention ignores
    position_ids-based packing (custom code) fails this, and the trainer pads instead."""
    import torch

    generator = torch.Generator().manual_seed(0)
    vocab = int(model.config.vocab_size)
    first = torch.randint(0, vocab, (1, 12), generator=generator)
    second = torch.randint(0, vocab, (1, 6), generator=generator)
    device = next(model.parameters()).device
    both = torch.cat([first, second], dim=1).to(device)
    restart = torch.cat([torch.arange(12), torch.arange(6)]).unsqueeze(0).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            def logprobs(**kwargs):
                logits = model(**kwargs, use_cache=False).logits.float()
                return torch.log_softmax(logits[0, -6:], dim=-1)

            alone = logprobs(input_ids=second.to(device))
            packed = logprobs(input_ids=both, position_ids=restart)
            joined = logprobs(input_ids=both)
    finally:
        model.train(was_training)
    # Without isolation `packed` is `joined` (leak = context); with it, only rounding is left,
    # which in bf16 can be a few hundredths of a nat: a quarter of the context effect sits
    # well between the two.
    leak = (packed - alone).abs().max().item()
    context = (joined - alone).abs().max().item()
    return leak <= max(1e-4, 0.25 * context)


def drop_tied_copies(model, state_dict: dict) -> None:
    """Keep one name of each tied parameter (the output head tied to the embeddings).

    save_pretrained drops tied names by finding tensors that share storage, but the state dict
    FSDP gathers holds separate copies; the extra name would make the saved model differ from
    the one a single process saves."""
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(param), name) != name:
            state_dict.pop(name, None)


def trim_progress(path, step: int) -> None:
    """Drop progress lines after `step`: a resumed run logs those steps again, and the loss
    curve in the report should show each step once."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if (event := parse_progress_line(line)) is not None and event.step <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def build_model(spec: MultiTaskModelSpec, ws: Workspace, stage: StagePlan, dtype):
    """The model a stage starts from: its initFrom stage's result, or the base model."""
    lora = spec.training.method == "lora"
    if stage.init_from:
        model = load_stage(spec, ws, stage.init_from, dtype, trainable=True)
        if lora != hasattr(model, "peft_config"):
            held = "full weights" if lora else "a LoRA adapter"
            raise TrainerError(f"stage {stage.init_from} holds {held}; training.method is "
                               f"{spec.training.method}: start over in a new workspace")
    else:
        model = load_base(spec, dtype)
    if spec.training.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs (LoRA) without tricks. The
        # method was renamed in transformers 5.x; the image may carry either name.
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        model.config.use_cache = False
    if lora and not stage.init_from:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(spec))
    return model


def train_stage(spec: MultiTaskModelSpec, ws: Workspace, plan: Plan, stage_name: str,
                options: TrainOptions | None = None,
                emit: Callable[[str], None] = print) -> dict[str, Any]:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_cosine_schedule_with_warmup

    options = options or TrainOptions()
    stage = stage_by_name(plan, stage_name)
    if ws.stage_done(stage.name):
        marker = read_marker(ws.final_dir(stage.name)) or {}
        return TrainResult.model_validate({**marker, "skipped": True}).to_details()
    if stage.init_from and not ws.stage_done(stage.init_from):
        raise TrainerError(f"stage {stage.name} starts from {stage.init_from}, which has not "
                           f"finished; train --stage {stage.init_from} first")
    train = spec.training
    cuda = torch.cuda.is_available() and not options.cpu
    accelerator = Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no",
                              step_scheduler_with_optimizer=False)
    world, rank = accelerator.num_processes, accelerator.process_index
    check_fsdp_active(accelerator)
    fsdp = uses_fsdp(accelerator)
    if train.batch_size < world:
        raise TrainerError(f"training.batchSize {train.batch_size} is smaller than the "
                           f"{world} training processes; each process needs an example a step")
    seed = stage_seed(train.seed, stage.name)
    set_seed(seed)

    # -- data: tokenized once, then the whole stage's schedule in a few numpy calls
    tokenizer = load_tokenizer(spec)
    encoder = PromptEncoder(tokenizer, train.max_seq_length)
    data = load_stage_tokens(ws, spec, stage, encoder)
    sizes = {t: len(d) for t, d in zip(stage.tasks, data, strict=True)}
    schedule = MixtureSchedule(stage.weights, sizes,
                               train.batch_size, stage.steps, seed)
    seq = train.max_seq_length
    budget = options.micro_batch_tokens or min(train.batch_size, 16 if cuda else 4) * seq
    overhead = options.micro_batch_overhead
    if overhead is None:
        overhead = 8 * seq if cuda else seq
    # Lengths of every example of the stage in one array, indexed by offset[task] + example.
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in data])[:-1]])
    all_lengths = np.concatenate([d.lengths for d in data])
    all_targets = all_lengths - np.concatenate([d.prompt_lengths for d in data])
    truncated = sum(d.truncated_inputs for d in data)
    if accelerator.is_main_process and truncated:
        print(f"stage {stage.name}: {truncated} example(s) longer than maxSeqLength "
              f"{train.max_seq_length} had their input truncated", file=sys.stderr)

    # -- model, optimizer, schedule (bf16 weights only under LoRA: full fine-tuning keeps fp32
    #    master weights and lets autocast run the matmuls in bf16)
    lora = train.method == "lora"
    dtype = torch.bfloat16 if cuda and lora else torch.float32
    model = build_model(spec, ws, stage, dtype)
    packed = options.packing and decide_packing(accelerator, model)
    if options.packing and not packed and accelerator.is_main_process:
        print(f"stage {stage.name}: the model's attention does not keep packed examples apart "
              "(position_ids); padding every example instead", file=sys.stderr)
    params = [p for p in model.parameters() if p.requires_grad]
    # fused: one kernel for all parameters; LoRA has hundreds of small ones.
    optimizer = torch.optim.AdamW(params, lr=train.effective_learning_rate,
                                  weight_decay=options.weight_decay, fused=cuda)
    warmup = math.ceil(train.warmup_ratio * stage.steps)
    scheduler = get_cosine_schedule_with_warmup(optimizer, warmup, stage.steps)
    # Model and optimizer in one call: under FSDP2 accelerate shards the model and points the
    # optimizer at the sharded parameters.
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    accelerator.register_save_state_pre_hook(keep_trainable_weights)
    model.train()

    # -- resume
    start, counters = 0, {"tokens": 0, "paddedTokens": 0}
    if accelerator.is_main_process:
        remove_partial(ws, stage.name)
    latest = latest_checkpoint(accelerator, ws, stage.name)
    if latest is not None:
        state = load_checkpoint(accelerator, latest[1])
        if state.get("schedule") != schedule.fingerprint():
            raise TrainerError(f"{latest[1]}: made with a different plan or seed; delete "
                               f"{ws.checkpoints_dir(stage.name)} to start the stage over")
        start, counters = state["step"], state["counters"]
        if accelerator.is_main_process:
            print(f"stage {stage.name}: resuming after step {start} from {latest[1]}",
                  file=sys.stderr)

    progress_file = ws.progress_file(stage.name)
    progress_file.parent.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        trim_progress(progress_file, start)
    last_loss = None  # on the device until logged: .item() every step would stall the GPU queue
    logged_loss = None  # the last loss averaged over ranks (every rank has it)
    began, last_log, tokens_since_log = time.monotonic(), time.monotonic(), 0
    for step in range(start, stage.steps):
        # -- this step's examples, bucketed by length into micro-batches
        task_ids, example_ids = schedule.batch(step)
        flat = offsets[task_ids] + example_ids
        lengths = all_lengths[flat]
        targets_all = int(all_targets[flat].sum())
        all_groups = step_shards(lengths, budget, world, overhead, equal_passes=fsdp,
                                 packed=packed)
        layouts = [[micro_batch_rows(lengths, g, packed) for g in groups] for groups in all_groups]

        # -- forward/backward
        try:
            step_loss = run_micro_batches(model, accelerator, data, task_ids, example_ids,
                                          layouts[rank], tokenizer.pad_token_id,
                                          targets_all / world, fsdp)
        except torch.OutOfMemoryError as err:
            raise TrainerError(
                f"stage {stage.name}: out of GPU memory in a micro-batch of up to {budget} "
                "padded tokens; turn on training.gradientCheckpointing, lower "
                "training.maxSeqLength, or pass a smaller --micro-batch-tokens") from err

        # -- clip, step
        # All of the model's parameters, not `params`: under FSDP accelerate computes the norm
        # over the shards only when handed exactly model.parameters() (frozen ones have no
        # gradient and are skipped either way).
        accelerator.clip_grad_norm_(model.parameters(), options.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        last_loss = step_loss
        counters["tokens"] += int(lengths.sum())
        counters["paddedTokens"] += sum(computed_tokens(lengths, rows)
                                        for micro_batches in layouts for rows in micro_batches)
        tokens_since_log += int(lengths.sum())

        # -- the loss over all ranks where it is logged or a checkpoint is saved (the reduce is
        # a collective: every rank takes part). A non-finite loss stops the stage here, before
        # a checkpoint or the final weights could keep weights that are NaN by now.
        saving = done % train.checkpoint_every == 0 or done == stage.steps
        log_now = saving or done % options.log_every == 0 or done == start + 1
        if log_now:
            loss = logged_loss = accelerator.reduce(last_loss, reduction="sum").item() / world
            if not math.isfinite(loss):
                raise TrainerError(
                    f"stage {stage.name}: the training loss is {loss} at step {done} of "
                    f"{stage.steps}; the weights are no longer usable, so nothing from this "
                    "step on is saved (earlier checkpoints stay); lower "
                    "training.learningRate, or check the base model's weights and the data")

        # -- checkpoint
        checkpoint = None
        if saving:
            checkpoint = save_checkpoint(accelerator, ws, stage.name, done,
                                         {"schedule": schedule.fingerprint(),
                                          "counters": counters}, options.keep_checkpoints)

        # -- log (rank 0 writes)
        if log_now:
            if not accelerator.is_main_process:
                continue
            now = time.monotonic()
            rate = (done - start) / max(now - began, 1e-9)
            event = ProgressEvent(
                stage=stage.name, step=done, total_steps=stage.steps, loss=round(loss, 6),
                learning_rate=scheduler.get_last_lr()[0], tokens=counters["tokens"],
                tokens_per_second=round(tokens_since_log / max(now - last_log, 1e-9), 1),
                non_padding_fraction=round(counters["tokens"] / counters["paddedTokens"], 4),
                percent=round(100.0 * done / stage.steps, 2),
                eta_seconds=round((stage.steps - done) / rate, 1),
                checkpoint=checkpoint.name if checkpoint else None,
            )
            line = event.to_line()
            emit(line)
            with open(progress_file, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
            last_log, tokens_since_log = now, 0

    # -- the stage's result: adapter or full weights, plus the tokenizer
    summary = {
        "stage": stage.name,
        "steps": stage.steps,
        "resumedFrom": start or None,
        # The last step always logs, so this is its loss over all ranks, the same everywhere.
        "lastLoss": None if logged_loss is None else round(logged_loss, 6),
        "nonPaddingFraction": round(counters["tokens"] / max(counters["paddedTokens"], 1), 4),
        "packed": packed,
        "truncatedInputs": truncated,
        "truncatedTargets": sum(d.truncated_targets for d in data),
    }
    state_dict = accelerator.get_state_dict(model)  # collective under FSDP: every rank calls
    if accelerator.is_main_process:
        drop_tied_copies(accelerator.unwrap_model(model), state_dict)
        with publish(ws.final_dir(stage.name), summary) as scratch:
            accelerator.unwrap_model(model).save_pretrained(scratch, state_dict=state_dict,
                                                            safe_serialization=True)
            tokenizer.save_pretrained(scratch)
    accelerator.wait_for_everyone()
    return TrainResult.model_validate({**summary, "skipped": False}).to_details()
