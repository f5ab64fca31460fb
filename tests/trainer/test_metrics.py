"""Task metrics on hand-checked cases."""

from __future__ import annotations

import pytest
from multitask_trainer import metrics


def test_accuracy_and_macro_f1():
    gold = ["a", "a", "b", "c"]
    predicted = ["a", "b", "b", "b"]
    assert metrics.accuracy(predicted, gold) == 0.5
    # F1: a = 2/3 (tp 1, fn 1), b = 2/4 (tp 1, fp 2), c = 0 (fn 1)
    assert metrics.macro_f1(predicted, gold) == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_generation_metrics_are_in_unit_range_and_perfect_on_equal_text():
    gold = ["the cat sat", "привет мир"]
    perfect = metrics.compute("generation", gold, gold)
    assert perfect == pytest.approx({"exact_match": 1.0, "rouge_l": 1.0, "chrf": 1.0})
    partial = metrics.compute("generation", ["the cat", "привет"], gold)
    assert partial["exact_match"] == 0.0
    # Non-Latin text still counts (rouge-score's own tokenizer would give 0 for it).
    assert partial["rouge_l"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert 0.0 < partial["chrf"] < 1.0
