"""Task metrics, all in [0, 1] (chrF divided by 100), the scale of `baseline.score`.

    accuracy, macro_f1          classification: predicted label vs gold label
    exact_match, rouge_l, chrf  generation: decoded text vs reference (whitespace-stripped)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
GENERATION_METRICS = ("exact_match", "rouge_l", "chrf")


def accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / max(len(gold), 1)


def macro_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Mean F1 over the labels that occur in gold or predictions (scikit-learn's default)."""
    labels = sorted(set(gold) | set(predicted))
    scores = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold, strict=True))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / max(len(scores), 1)


def exact_match(predicted: Sequence[str], gold: Sequence[str]) -> float:
    pairs = zip(predicted, gold, strict=True)
    return sum(p.strip() == g.strip() for p, g in pairs) / max(len(gold), 1)


class _WordTokenizer:
    """rouge-score's default tokenizer keeps only [a-z0-9], which scores every non-Latin text
    as 0; Unicode word characters keep ROUGE-L meaningful for any language."""

    def tokenize(self, text: str) -> list[str]:
        return re.findall(r"\w+", text.lower())


def rouge_l(predicted: Sequence[str], gold: Sequence[str]) -> float:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_WordTokenizer())
    scores = [scorer.score(g, p)["rougeL"].fmeasure for p, g in zip(predicted, gold, strict=True)]
    return sum(scores) / max(len(scores), 1)


def chrf(predicted: Sequence[str], gold: Sequence[str]) -> float:
    from sacrebleu.metrics import CHRF

    return CHRF().corpus_score(list(predicted), [list(gold)]).score / 100.0


def compute(kind: str, predicted: Sequence[str], gold: Sequence[str]) -> dict[str, float]:
    """Every metric of a task type."""
    if kind == "classification":
        return {"accuracy": accuracy(predicted, gold), "macro_f1": macro_f1(predicted, gold)}
    return {
        "exact_match": exact_match(predicted, gold),
        "rouge_l": rouge_l(predicted, gold),
        "chrf": chrf(predicted, gold),
    }
