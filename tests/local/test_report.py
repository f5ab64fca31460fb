"""The run report's task table: a task whose baseline scored 0 qualifies whatever it scores,
and the report says so instead of a bare "yes"."""

from __future__ import annotations

from multitask_operator.local.report import markdown, qualified_cell


def _task(name: str, score: float | None, baseline: float | None, qualified: bool) -> dict:
    return {"name": name, "type": "generation", "included": True, "metric": "exact_match",
            "score": score, "baseline": baseline, "baselineSource": "trained",
            "ratio": None if not baseline else score / baseline, "qualified": qualified,
            "reason": "below the threshold"}


def _data(tasks: list[dict]) -> dict:
    return {"model": "m", "qualifyThreshold": 0.99,
            "qualified": [t["name"] for t in tasks if t["qualified"]], "tasks": tasks,
            "serving": {"gpusBefore": 2, "gpusAfter": 1, "costSaving": "50.0%"},
            "training": [], "plan": {"stages": [], "skipped": []}}


def test_a_zero_baseline_is_named_in_the_table_and_explained():
    tasks = [_task("title", 0.3, 0.2, True), _task("order-id", 0.0, 0.0, True),
             _task("reply", 0.1, 0.5, False)]
    assert [qualified_cell(t) for t in tasks] == ["yes", "yes (baseline 0)", "no"]
    text = markdown(_data(tasks), [])
    assert "| order-id | generation | yes | exact_match | 0.000 | 0.000 (trained) | - | - | " \
           "yes (baseline 0) |" in text
    assert "A baseline of 0 qualifies any score" in text


def test_no_zero_baseline_no_note():
    text = markdown(_data([_task("title", 0.3, 0.2, True)]), [])
    assert "| yes |" in text and "baseline 0" not in text


def test_intervals_majority_and_a_baseline_that_does_not_beat_it():
    task = {**_task("spam", 0.82, 0.61, True), "scoreInterval": [0.78, 0.86],
            "baselineInterval": [0.55, 0.66], "majority": 0.64,
            "baselineNotAboveMajority": True}
    text = markdown(_data([task]), [])
    assert "| 0.820 [0.780, 0.860] | 0.610 [0.550, 0.660] (trained) | 0.640 |" in text
    assert "yes (baseline <= majority)" in text
    assert "makes the comparison meaningless" in text
    assert qualified_cell({**task, "qualified": False}) == "no (baseline <= majority)"
