"""The report's PNG plots (matplotlib, Agg backend: no display needed).

mixtures.png  sampling probability per task, one bar group per stage
loss.png      training loss per step, one line per stage
scores.png    per-task score against its baseline, with the qualification line
gpus.png      serving GPUs before and after
"""

from __future__ import annotations

from pathlib import Path

from .records import RunFacts


def write_plots(facts: RunFacts, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # Stage mixtures
    stages = [s for s in facts.plan.stages if s.kind != "baseline"]
    tasks = [t.name for t in facts.plan.tasks if t.included]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(1, len(stages))
    for i, stage in enumerate(stages):
        xs = [j + i * width for j in range(len(tasks))]
        ax.bar(xs, [stage.weights.get(t, 0.0) for t in tasks], width=width, label=stage.name)
    ax.set_xticks([j + width * (len(stages) - 1) / 2 for j in range(len(tasks))], tasks,
                  rotation=20)
    ax.set_ylabel("sampling probability")
    ax.set_title("Task mixture per stage")
    ax.legend()
    save(fig, "mixtures.png")

    # Training loss
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for stage_name, events in facts.curves.items():
        points = [(e.step, e.loss) for e in events if e.loss is not None]
        if points:
            ax.plot(*zip(*points, strict=True), label=stage_name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss per stage")
    if facts.curves:
        ax.legend()
    save(fig, "loss.png")

    # Scores against baselines
    rows = [t for t in facts.results.tasks if t.score is not None]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [t.baseline or 0 for t in rows], width=0.4, label="baseline")
    ax.bar([x + 0.2 for x in xs], [t.score or 0 for t in rows], width=0.4, label="multi-task",
           color=["tab:green" if t.qualified else "tab:red" for t in rows])
    for x, t in zip(xs, rows, strict=True):
        if t.baseline:
            line = facts.results.qualify_threshold * t.baseline
            ax.hlines(line, x - 0.45, x + 0.45, colors="black", linestyles="dashed")
    ax.set_xticks(list(xs), [t.name for t in rows], rotation=20)
    ax.set_ylim(0, 1.2)  # headroom for the legend above scores of 1.0
    ax.set_title(f"Score vs baseline (dashed: {facts.results.qualify_threshold} x baseline)")
    ax.legend(loc="upper center", ncol=2)
    save(fig, "scores.png")

    # GPUs before / after
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.bar(["before", "after"], [facts.cost.gpus_before, facts.cost.gpus_after],
           color=["tab:gray", "tab:blue"])
    ax.set_ylabel("serving GPUs")
    ax.set_title(f"Serving cost: {facts.cost.saving} saved")
    save(fig, "gpus.png")
    return written
