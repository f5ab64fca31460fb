"""How sure a score is: a 95% bootstrap interval over the eval examples, and the score of always
answering the majority class (what a classifier must beat to mean anything).

Resampling draws the eval examples with replacement, RESAMPLES times, with a seed from the
training seed and the task, so the interval is reproducible and the score's and the baseline's
intervals are taken on the same resamples of the same examples. Metrics that are a mean over
examples (accuracy, exact match, ROUGE-L) resample their per-example values; chrF, a corpus
statistic (the reported score), is recomputed on every resample from the resampled sentences'
summed n-gram statistics; macro-F1 is recomputed on every resample.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

from . import metrics

RESAMPLES = 1000


def _seed(seed: int, task: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{task}".encode()).digest()[:8], "little")


def per_example(metric: str, predicted: Sequence[str], gold: Sequence[str]) -> list[float]:
    """Each example's value of a metric that is a mean over examples."""
    if metric in ("accuracy",):
        return [float(p == g) for p, g in zip(predicted, gold, strict=True)]
    if metric == "exact_match":
        return [float(p.strip() == g.strip()) for p, g in zip(predicted, gold, strict=True)]
    if metric == "rouge_l":
        return [metrics.rouge_l([p], [g]) for p, g in zip(predicted, gold, strict=True)]
    if metric == "chrf":
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        return [chrf.sentence_score(p, [g]).score / 100.0
                for p, g in zip(predicted, gold, strict=True)]
    raise ValueError(f"{metric} is not a mean over examples")


def _draws(n: int, seed: int, task: str) -> Any:
    import numpy as np

    return np.random.default_rng(_seed(seed, task)).integers(0, n, size=(RESAMPLES, n))


def _resampled(metric: str, predicted: Sequence[str], gold: Sequence[str], draws: Any) -> Any:
    """The metric on every resample (one row of `draws` each)."""
    import numpy as np

    if metric == "macro_f1":
        return np.array([metrics.macro_f1([predicted[i] for i in row], [gold[i] for i in row])
                         for row in draws])
    if metric == "chrf":
        return _chrf_resampled(predicted, gold, draws)
    return np.asarray(per_example(metric, predicted, gold))[draws].mean(axis=1)


def _chrf_resampled(predicted: Sequence[str], gold: Sequence[str], draws: Any) -> Any:
    """Corpus chrF (metrics.chrf) on every resample. sacrebleu's corpus score is an F-score of
    n-gram statistics summed over sentences: each sentence's statistics are taken once and
    summed per resample. These two methods are sacrebleu's own but private; its public
    corpus_score would extract every sentence's n-grams again per resample (about 19 s for 1,000
    resamples of 150 sentences here, against well under a second), so it is the fallback only.
    The mean of sentence chrF is no substitute: on short answers it sits well below the corpus
    score, and its interval can leave the reported score out."""
    import numpy as np
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    extract = getattr(chrf, "_extract_corpus_statistics", None)
    score = getattr(chrf, "_compute_score_from_stats", None)
    if extract is None or score is None:
        return np.array([metrics.chrf([predicted[i] for i in row], [gold[i] for i in row])
                         for row in draws])
    stats = np.asarray(extract(list(predicted), [list(gold)]))
    return np.array([score(stats[row].sum(axis=0).tolist()).score / 100.0 for row in draws])


def interval(metric: str, predicted: Sequence[str], gold: Sequence[str], seed: int,
             task: str) -> tuple[float, float]:
    """The 95% bootstrap interval (2.5th and 97.5th percentiles) of `metric`."""
    import numpy as np

    if not gold:
        return 0.0, 0.0
    values = _resampled(metric, predicted, gold, _draws(len(gold), seed, task))
    low, high = np.percentile(values, [2.5, 97.5])
    return round(float(low), 4), round(float(high), 4)


def paired_margin(metric: str, unified: Sequence[str], baseline: Sequence[str],
                  gold: Sequence[str], threshold: float, seed: int, task: str) -> float:
    """The lower end (2.5th percentile) of score - threshold x baseline, both resampled on the
    same examples: the non-inferiority margin (>= 0 qualifies)."""
    import numpy as np

    if not gold:
        return 0.0
    draws = _draws(len(gold), seed, task)
    diff = (_resampled(metric, unified, gold, draws)
            - threshold * _resampled(metric, baseline, gold, draws))
    return round(float(np.percentile(diff, 2.5)), 4)


def majority(metric: str, train_outputs: Sequence[str], gold: Sequence[str]) -> float:
    """The score of answering the most frequent training label every time (ties: the first
    in sorted order)."""
    counts = Counter(train_outputs)
    label = min(counts, key=lambda x: (-counts[x], x))
    predicted = [label] * len(gold)
    return round(metrics.compute("classification", predicted, gold)[metric], 4)
