"""The trainer's reports as the operator parses them."""

from __future__ import annotations

import json

from multitask_operator.api.results import (
    TERMINATION_MESSAGE_LIMIT,
    EvalResults,
    ProgressEvent,
    StepSummary,
    parse_progress_line,
    termination_message,
)


def test_progress_line_round_trips_in_camel_case():
    event = ProgressEvent(stage="stage2", step=5, total_steps=10, loss=0.5, percent=50.0,
                          tokens_per_second=100.0, eta_seconds=3.0)
    line = event.to_line()
    assert '"totalSteps":10' in line and '"tokensPerSecond":100.0' in line
    assert parse_progress_line(line + "\n") == event


def test_other_output_is_not_progress():
    assert parse_progress_line("Loading weights: 100%") is None
    assert parse_progress_line('{"event": "other", "step": 1}') is None
    assert parse_progress_line('{"event": "progress", "step": "x"}') is None
    assert parse_progress_line("{not json") is None


def test_termination_message_fits_4_kib_even_with_huge_content():
    summary = StepSummary(step="evaluate", ok=False, message="é" * 5000,
                          details={f"task-{i}": 0.5 for i in range(500)})
    text = termination_message(summary)
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT
    parsed = StepSummary.model_validate(json.loads(text))
    assert parsed.details == {"truncated": True}
    assert parsed.message.endswith("...") and parsed.message.startswith("éé")


def test_small_termination_message_is_kept_whole():
    summary = StepSummary(step="train", stage="stage1", ok=True, message="trained",
                          details={"lastLoss": 0.1})
    assert StepSummary.model_validate(json.loads(termination_message(summary))) == summary


def test_eval_results_parse_from_wire():
    wire = {"qualifyThreshold": 0.99, "tasks": [
        {"name": "a", "type": "classification", "included": True, "metric": "accuracy",
         "score": 0.9, "baseline": 0.9, "baselineSource": "spec", "qualified": True,
         "examples": 10},
        {"name": "b", "type": "generation", "included": False, "metric": "rouge_l",
         "baselineSource": "none", "qualified": False, "examples": 3},
    ]}
    results = EvalResults.model_validate(wire)
    assert results.qualified == ["a"]
    assert results.task("b").score is None


def test_each_step_result_round_trips_through_the_termination_message():
    """The trainer builds a typed result, the operator and `mtm run` read the same type back
    from the termination message; a field a newer trainer adds is ignored, not fatal."""
    import json

    from multitask_operator.api.results import (
        EvaluateResult,
        ExportResult,
        PrepareResult,
        StepSummary,
        TrainResult,
        termination_message,
    )

    results = [
        PrepareResult(counts={"intent": 90}, labels={"intent": ["a", "b"]}, stages=["stage2"]),
        TrainResult(stage="stage2", steps=10, last_loss=0.25, packed=True),
        EvaluateResult(scores={"intent": 0.9}, qualified=["intent"], baselines={"intent": 0.8}),
        ExportResult(layout="merged", prompt_format={"prefix": "<u>", "suffix": "<a>",
                                                     "source": "chat_template"}, tasks=1),
    ]
    for result in results:
        details = {**result.to_details(), "addedByANewerTrainer": 1}
        summary = StepSummary(step="x", ok=True, message="m", details=details)
        back = StepSummary.model_validate(json.loads(termination_message(summary)))
        assert back.result(type(result)) == result
