"""Which examples each optimizer step trains on, and how they are cut into micro-batches.

`MixtureSchedule` fixes the whole stage up front with a few numpy calls: the task of every
example slot is an i.i.d. draw from the plan's weights (stage 1 instance-balanced, stage 2
temperature-scaled: the planner computed them), and within a task the draws walk through
fresh random permutations, one per pass, so every example is seen once before any is seen
twice. The schedule is a pure function of (seed, weights, sizes, batch size, steps): resuming
mid-epoch needs only the step number, and a checkpoint stores the schedule's fingerprint to
refuse resuming under a different plan.

`micro_batches` buckets one step's examples by length: sorted longest first, dealt to the data
parallel ranks in snake order (balanced token counts), and on each rank cut into runs of
similar length where the padding saved outweighs the cost of one more forward pass.
`step_shards` does this for every rank at once: all ranks compute the same global schedule and
the same shards, so the mixture is fixed before sharding and each example of a step goes to
exactly one rank, whatever the number of ranks.

`pack_rows` then packs each micro-batch: its examples are laid end to end in rows no longer
than its longest example (best-fit decreasing), each with position ids that restart at 0, so a
short example fills the room a padded layout would have wasted. The attention of transformers'
models keeps packed examples apart when given such position ids and no attention mask
(masking_utils.find_packed_sequence_indices; varlen kernels under flash-attention); the trainer
checks that the model does before relying on it (train.packing_isolates).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import numpy as np


class MixtureSchedule:
    def __init__(
        self,
        weights: Mapping[str, float],
        sizes: Mapping[str, int],
        batch_size: int,
        steps: int,
        seed: int,
    ) -> None:
        self.tasks = list(weights)
        missing = [t for t in self.tasks if sizes.get(t, 0) <= 0]
        if missing:
            raise ValueError(f"tasks without examples cannot be sampled: {', '.join(missing)}")
        probs = np.array([weights[t] for t in self.tasks], dtype=np.float64)
        self.probs = probs / probs.sum()
        self.sizes = np.array([sizes[t] for t in self.tasks], dtype=np.int64)
        self.batch_size = batch_size
        self.steps = steps
        self.seed = seed
        rng = np.random.default_rng(seed)
        total = batch_size * steps
        self.task_ids = rng.choice(len(self.tasks), size=total, p=self.probs).astype(np.int32)
        self.example_ids = np.empty(total, dtype=np.int64)
        for t, n in enumerate(self.sizes):
            slots = np.flatnonzero(self.task_ids == t)
            if len(slots) == 0:
                continue
            passes = -(-len(slots) // int(n))  # ceil
            # One independent permutation of the task's examples per pass, row by row.
            perms = np.argsort(rng.random((passes, int(n))), axis=1).reshape(-1)
            self.example_ids[slots] = perms[: len(slots)]

    def batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(task index, example index) of every example in optimizer step `step` (0-based)."""
        if not 0 <= step < self.steps:
            raise IndexError(f"step {step} is outside the schedule's {self.steps} steps")
        window = slice(step * self.batch_size, (step + 1) * self.batch_size)
        return self.task_ids[window], self.example_ids[window]

    def fingerprint(self) -> str:
        state = {
            "tasks": self.tasks,
            "probs": [round(float(p), 12) for p in self.probs],
            "sizes": self.sizes.tolist(),
            "batch": self.batch_size,
            "steps": self.steps,
            "seed": self.seed,
        }
        return hashlib.sha256(json.dumps(state).encode()).hexdigest()[:16]


def micro_batches(
    lengths: np.ndarray,
    token_budget: int,
    world_size: int = 1,
    rank: int = 0,
    overhead_tokens: int = 0,
    packed: bool = False,
) -> list[np.ndarray]:
    """Positions (into `lengths`) of this rank's micro-batches for one optimizer step.

    Cost model: a micro-batch costs the tokens it computes plus `overhead_tokens`, the fixed
    cost of one forward/backward pass (kernel launches, Python) in token-equivalents. Padded,
    it computes rows x longest; `packed` (pack_rows), about its tokens rounded up to whole rows
    of the longest (the rows' lower bound). Splitting trims padding but pays that overhead
    again, so the split is chosen to minimise the total, over this rank's examples sorted by
    length, by dynamic programming over the cut points; packed, there is little padding to
    trim, and a step is mostly one pass. A micro-batch never exceeds `token_budget` padded
    tokens, packed or not (packing computes no more than padding, so the memory bound holds
    either way; an example longer than the budget goes alone). Every rank gets at least one
    example when there are `world_size` of them."""
    order = np.argsort(-lengths, kind="stable")
    # Snake order (0,1,..,W-1,W-1,..,0,...) evens out tokens per rank better than round robin.
    cycle = np.concatenate([np.arange(world_size), np.arange(world_size)[::-1]])
    ranks = cycle[np.arange(len(order)) % len(cycle)]
    mine = order[ranks == rank]
    longest = lengths[mine].astype(np.float64)  # descending: a group's first is its longest
    total = np.concatenate([[0.0], np.cumsum(longest)])
    n = len(mine)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=np.int64)
    for j in range(1, n + 1):
        # Cost of ending a group at j that starts at each i < j.
        rows = j - np.arange(j)
        padded = rows * longest[:j]
        computed = (np.ceil((total[j] - total[:j]) / longest[:j]) * longest[:j] if packed
                    else padded)
        cost = best[:j] + overhead_tokens + computed
        cost[(padded > token_budget) & (rows > 1)] = np.inf
        cut[j] = int(np.argmin(cost))
        best[j] = cost[cut[j]]
    groups: list[np.ndarray] = []
    j = n
    while j > 0:
        groups.append(mine[cut[j] : j])
        j = cut[j]
    return groups[::-1]


def pack_rows(lengths: np.ndarray, group: np.ndarray) -> list[np.ndarray]:
    """The rows of one packed micro-batch: positions of `group`, placed best-fit decreasing
    into rows of the group's longest length (so a row is never longer than the padded layout's
    and attention costs no more per row). A micro-batch is a few dozen examples: the loop is
    over those, not over the data."""
    order = group[np.argsort(-lengths[group], kind="stable")]
    if len(order) == 0:
        return []
    capacity = int(lengths[order[0]])
    rows: list[list[int]] = []
    room: list[int] = []
    for position in order:
        need = int(lengths[position])
        fits = [r for r in range(len(rows)) if room[r] >= need]
        if fits:
            best = min(fits, key=room.__getitem__)
            rows[best].append(int(position))
            room[best] -= need
        else:
            rows.append([int(position)])
            room.append(capacity - need)
    return [np.array(row, dtype=np.int64) for row in rows]


def micro_batch_rows(lengths: np.ndarray, group: np.ndarray, packed: bool) -> list[np.ndarray]:
    """The rows a micro-batch is computed as: `pack_rows` when packing puts two examples in one
    row, else one example a row (nothing to share: the plain padded layout, which is cheaper)."""
    if packed:
        rows = pack_rows(lengths, group)
        if len(rows) < len(group):
            return rows
    return [group[j : j + 1] for j in range(len(group))]


def computed_tokens(lengths: np.ndarray, rows: list[np.ndarray]) -> int:
    """Tokens the model computes on for these rows, padding included: rows x longest row."""
    return len(rows) * max(int(lengths[row].sum()) for row in rows) if rows else 0


def padded_tokens(lengths: np.ndarray, groups: list[np.ndarray], packed: bool = False) -> int:
    """Tokens the model computes on, padding included, for these micro-batches."""
    return sum(computed_tokens(lengths, micro_batch_rows(lengths, g, packed)) for g in groups)


def step_shards(
    lengths: np.ndarray,
    token_budget: int,
    world_size: int = 1,
    overhead_tokens: int = 0,
    equal_passes: bool = False,
    packed: bool = False,
) -> list[list[np.ndarray]]:
    """Every rank's micro-batches for one optimizer step: `shards[rank]` as `micro_batches`.

    With `equal_passes` every rank gets the same number of micro-batches, which FSDP needs:
    each forward all-gathers and each backward reduce-scatters parameters, collectives that
    every rank must join. A rank with fewer passes splits its largest micro-batch in two until
    the counts match (halves never exceed the budget); a rank with fewer examples than passes
    gets empty micro-batches, which the training loop runs as zero-weight passes."""
    shards = [micro_batches(lengths, token_budget, world_size, r, overhead_tokens, packed)
              for r in range(world_size)]
    if not equal_passes:
        return shards
    passes = max(len(groups) for groups in shards)
    for groups in shards:
        while len(groups) < passes:
            largest = max(range(len(groups)), key=lambda i: len(groups[i]), default=None)
            if largest is None or len(groups[largest]) < 2:
                break
            group = groups[largest]
            half = (len(group) + 1) // 2
            groups[largest : largest + 1] = [group[:half], group[half:]]
        groups.extend(np.empty(0, dtype=np.int64) for _ in range(passes - len(groups)))
    return shards
