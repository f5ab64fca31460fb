"""The gate's sense of noise: bootstrap intervals with known answers, the majority-class score,
and the flag that reaches status when a baseline does not beat it."""

from __future__ import annotations

import pytest
from multitask_operator.api.results import StepSummary
from multitask_operator.api.spec import MultiTaskModelSpec
from multitask_operator.reconcile.table import task_rows
from multitask_trainer import confidence, metrics
from multitask_trainer.confidence import interval, majority, per_example

from tests.operator import factories as f


def test_certain_answers_have_no_width():
    gold = ["a", "b"] * 50
    assert interval("accuracy", gold, gold, 0, "t") == (1.0, 1.0)
    assert interval("accuracy", ["c"] * 100, gold, 0, "t") == (0.0, 0.0)


def test_a_coin_flip_over_400_examples_is_half_plus_or_minus_five_points():
    gold = ["a"] * 400
    predicted = ["a", "b"] * 200  # accuracy exactly 0.5, binomial sd 0.025
    low, high = interval("accuracy", predicted, gold, 0, "t")
    assert 0.44 < low < 0.47 and 0.53 < high < 0.56
    assert interval("accuracy", predicted, gold, 0, "t") == (low, high)  # reproducible
    assert interval("accuracy", predicted, gold, 0, "other") != (low, high)


def test_macro_f1_and_generation_metrics_bracket_their_point_value():
    gold = ["a", "b", "c"] * 30
    predicted = ["a", "b", "b"] * 30
    low, high = interval("macro_f1", predicted, gold, 1, "t")
    assert low <= 0.5667 <= high
    texts = ["the parcel arrives on monday", "a refund in five days"] * 20
    guesses = ["the parcel arrives monday", "no idea"] * 20
    for metric in ("rouge_l", "exact_match"):
        values = per_example(metric, guesses, texts)
        low, high = interval(metric, guesses, texts, 1, "t")
        assert low <= sum(values) / len(values) <= high
    low, high = interval("chrf", guesses, texts, 1, "t")
    assert low <= metrics.chrf(guesses, texts) <= high
    with pytest.raises(ValueError):
        per_example("macro_f1", guesses, texts)


def test_the_chrf_interval_is_of_the_corpus_score_it_reports():
    """Short answers, as a chat-reply task gives: the mean of sentence chrF (0.121 here) is far
    from the corpus chrF that evaluate reports (0.074), and the former's interval ([0.082,
    0.162]) leaves the score out."""
    import random

    rng = random.Random(4)
    words = "yes no maybe i think so not really sure it is fine good bad ok".split()
    texts = [" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(60)]
    guesses = [" ".join(rng.choices(words, k=rng.randint(1, 3))) for _ in range(60)]
    corpus = metrics.chrf(guesses, texts)
    sentences = sum(per_example("chrf", guesses, texts)) / len(texts)
    assert sentences - corpus > 0.04  # the case where the two differ
    low, high = interval("chrf", guesses, texts, 0, "t")
    assert low <= corpus <= high
    values = confidence._resampled("chrf", guesses, texts, [list(range(60))])
    assert abs(values[0] - corpus) < 1e-9  # the identity resample is the reported score


def test_majority_answers_the_most_frequent_training_label():
    assert majority("accuracy", ["a", "a", "b"], ["a", "b", "b", "b"]) == 0.25
    assert majority("accuracy", ["b", "a"], ["a", "a"]) == 1.0  # a tie: the first label
    assert majority("macro_f1", ["a", "a"], ["a", "b"]) == round((2 / 3 + 0) / 2, 4)


def test_a_baseline_no_better_than_the_majority_is_flagged_in_status():
    spec = MultiTaskModelSpec.model_validate(f.spec())
    evaluate = StepSummary(step="evaluate", ok=True, message="", details={
        "scores": {"intent": 0.85, "topic": 0.95}, "qualified": ["intent", "topic"],
        "intervals": {"intent": {"scoreInterval": [0.8, 0.9], "majority": 0.8},
                      "topic": {"scoreInterval": [0.9, 1.0], "majority": 0.5}}})
    rows = {r["name"]: r for r in task_rows(spec, None, evaluate, set(), False)}
    assert rows["intent"]["baselineNotAboveMajority"] is True  # baseline.score 0.8 <= 0.8
    assert rows["intent"]["scoreInterval"] == [0.8, 0.9]
    assert "baselineNotAboveMajority" not in rows["topic"] and rows["topic"]["majority"] == 0.5


def test_the_paired_margin_of_non_inferiority():
    from multitask_trainer.confidence import paired_margin

    gold = ["a", "b"] * 100
    same = ["a", "b"] * 80 + ["b", "a"] * 20  # 80% right
    assert paired_margin("accuracy", same, same, gold, 1.0, 0, "t") == 0.0  # identical: 0
    assert paired_margin("accuracy", same, same, gold, 0.9, 0, "t") > 0  # 0.1 x 0.8, less noise
    worse = ["a", "b"] * 60 + ["b", "a"] * 40  # 60% right
    assert paired_margin("accuracy", worse, same, gold, 0.95, 0, "t") < 0
    # Equal point scores, different examples right: the pairing sees the noise, so a threshold
    # of 1 does not qualify what the point rule would.
    other = ["b", "a"] * 20 + ["a", "b"] * 80
    assert paired_margin("accuracy", other, same, gold, 1.0, 0, "t") < 0


def test_non_inferiority_in_the_operator_and_the_revision():
    from multitask_operator.reconcile import training_revision
    from multitask_operator.reconcile.table import evaluation

    raw = f.spec(recipe={"qualifyRule": "nonInferiority"})
    spec = MultiTaskModelSpec.model_validate(raw)
    evaluate = StepSummary(step="evaluate", ok=True, message="", details={
        "scores": {"intent": 0.85, "topic": 0.95}, "qualified": ["intent", "topic"],
        "intervals": {"intent": {"scoreInterval": [0.81, 0.89]},  # 0.81 >= 0.99 x 0.8
                      "topic": {"scoreInterval": [0.85, 0.99]}}})  # 0.85 < 0.99 x 0.9
    assert evaluation(evaluate, spec)[1] == ["intent"]
    rows = {r["name"]: r for r in task_rows(spec, None, evaluate, set(), False)}
    assert rows["intent"]["margin"] == round(0.81 - 0.99 * 0.8, 4)
    # The threshold is part of what evaluate decides under non-inferiority, not under point.
    stricter = f.spec(recipe={"qualifyRule": "nonInferiority", "qualifyThreshold": 0.9})
    assert training_revision(MultiTaskModelSpec.model_validate(stricter)) != (
        training_revision(spec))
    point = MultiTaskModelSpec.model_validate(f.spec())
    assert training_revision(point) != training_revision(spec)
    assert training_revision(MultiTaskModelSpec.model_validate(
        f.spec(recipe={"qualifyThreshold": 0.9}))) == training_revision(point)
