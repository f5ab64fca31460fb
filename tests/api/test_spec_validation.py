"""The pydantic spec: defaults, and every cross-field rule with the field path it reports."""

from __future__ import annotations

import pytest
from multitask_operator.api import MultiTaskModelSpec
from multitask_operator.loader import format_path, validation_problems
from pydantic import ValidationError


def problems(spec: dict) -> list[tuple[str, str]]:
    try:
        MultiTaskModelSpec.model_validate(spec)
    except ValidationError as err:
        return [(p.path, p.message) for p in validation_problems(err, "f.yaml", None, ("spec",))]
    return []


def test_minimal_spec_gets_documented_defaults(spec_dict):
    spec = MultiTaskModelSpec.model_validate(spec_dict)
    assert spec.recipe.task_filtering == "byType"
    assert spec.recipe.keep == "largest"
    assert spec.recipe.high_resource_threshold == 10000
    assert spec.recipe.stage2.temperature == 2.0
    assert spec.recipe.stage2.dataset_size_limit == 50000
    assert spec.recipe.qualify_threshold == 0.99
    assert spec.training.method == "lora"
    assert spec.training.effective_learning_rate == 2e-4
    assert spec.serving.engine == "tgi"
    assert spec.serving.cutover == "Auto"
    assert spec.task("intent").effective_metric == "accuracy"
    assert spec.task("summary").effective_metric == "rouge_l"


def test_wire_form_round_trips(spec_dict):
    spec = MultiTaskModelSpec.model_validate(spec_dict)
    again = MultiTaskModelSpec.model_validate(spec.to_wire())
    assert again == spec
    assert "taskFiltering" in spec.to_wire()["recipe"]


def test_full_learning_rate_default(spec_dict):
    spec_dict["training"] = {"method": "full"}
    assert MultiTaskModelSpec.model_validate(spec_dict).training.effective_learning_rate == 2e-5


# (change to a valid spec, field path reported, fragment of the message); test_crd reuses these
# to check that the CRD rejects the same objects.
BAD_SPECS = [
    (lambda s: s["baseModel"].update(path="/models/x"), "spec.baseModel.id", "exactly one"),
    (lambda s: s["baseModel"].pop("id"), "spec.baseModel.id", "neither is set"),
    (lambda s: s["tasks"].append(dict(s["tasks"][0])), "spec.tasks", "'intent' appears twice"),
    (lambda s: s["tasks"][0].update(name="Intent_1"), "spec.tasks[0].name", "DNS-1123"),
    (lambda s: s["tasks"][0].update(name="a" * 41), "spec.tasks[0].name", "at most 40"),
    (
        lambda s: s["tasks"][1].update(labels=["a", "b"]),
        "spec.tasks[1].labels",
        "only allowed on classification",
    ),
    (
        lambda s: s["tasks"][1].update(taxonomy="binary"),
        "spec.tasks[1].taxonomy",
        "only allowed on classification",
    ),
    (
        lambda s: s["tasks"][0].update(metric="rouge_l"),
        "spec.tasks[0].metric",
        "accepted: accuracy or macro_f1",
    ),
    (
        lambda s: s["tasks"][1].update(metric="accuracy"),
        "spec.tasks[1].metric",
        "accepted: exact_match, rouge_l or chrf",
    ),
    (lambda s: s["tasks"][0].update(metric="bleu"), "spec.tasks[0].metric", "'bleu'"),
    (lambda s: s["tasks"][0].update(labels=["a", "a"]), "spec.tasks[0].labels", "unique"),
    (lambda s: s["tasks"][0].update(taxonomy="binary"), "spec.tasks[0].labels", "exactly 2 labels"),
    (
        lambda s: s["tasks"][0]["data"].update(train="gs://bucket/x"),
        "spec.tasks[0].data.train",
        "gs:// is not supported",
    ),
    (
        lambda s: s["tasks"][0]["data"].update(train="pvc://claim-only"),
        "spec.tasks[0].data.train",
        "pvc://CLAIM/PATH",
    ),
    (
        lambda s: s["tasks"][0]["data"].update(
            train="pvc://datasets/../../../proc/self/environ"),
        "spec.tasks[0].data.train",
        "may not contain '..' segments",
    ),
    (
        lambda s: s["tasks"][0]["data"].update(eval="pvc://claim/intent/.."),
        "spec.tasks[0].data.eval",
        "may not contain '..' segments",
    ),
    (
        lambda s: s["tasks"][0]["data"].update(evalFraction=1.0),
        "spec.tasks[0].data.evalFraction",
        "less than 1",
    ),
    (
        lambda s: s["tasks"][0].update(baseline={"score": 1.5}),
        "spec.tasks[0].baseline.score",
        "less than or equal to 1",
    ),
    (lambda s: s["tasks"][0].update(colour="red"), "spec.tasks[0].colour", "unknown field"),
    (lambda s: s.update(tasks=[]), "spec.tasks", "at least 1"),
    (
        lambda s: s.update(recipe={"stage2": {"temperature": 0}}),
        "spec.recipe.stage2.temperature",
        "greater than 0",
    ),
    (
        lambda s: s.update(recipe={"stage2": {"datasetSizeLimit": 0}}),
        "spec.recipe.stage2.datasetSizeLimit",
        "greater than or equal to 1",
    ),
    (
        lambda s: s.update(recipe={"qualifyThreshold": 0}),
        "spec.recipe.qualifyThreshold",
        "greater than 0",
    ),
    (
        lambda s: s.update(recipe={"qualifyThreshold": 1.01}),
        "spec.recipe.qualifyThreshold",
        "less than or equal to 1",
    ),
    (
        lambda s: s.update(recipe={"keep": "everything"}),
        "spec.recipe.keep",
        "'everything' is not accepted",
    ),
    (
        lambda s: s.update(recipe={"taskFiltering": "none", "keep": "generation"}),
        "spec.recipe.keep",
        "needs taskFiltering byType or byTaxonomy",
    ),
    (
        lambda s: s["tasks"].pop(1) and s.update(recipe={"keep": "generation"}),
        "spec.recipe.keep",
        "no task has type generation",
    ),
    (
        lambda s: s.update(training={"nodes": 2}),
        "spec.training.runtime",
        "use jobset, kubeflow or indexedJob",
    ),
    (
        lambda s: s.update(training={"fsdp": True, "resources": {"gpus": 0}}),
        "spec.training.fsdp",
        "needs resources.gpus >= 1",
    ),
    (
        lambda s: s.update(training={"resources": {"memory": "lots"}}),
        "spec.training.resources.memory",
        "match pattern",
    ),
    (
        lambda s: s.update(serving={"autoscaling": {"minReplicas": 3, "maxReplicas": 2}}),
        "spec.serving.autoscaling.maxReplicas",
        "must be >= minReplicas",
    ),
    (lambda s: s.update(serving={"engine": "triton"}), "spec.serving.engine", "'tgi'"),
    (lambda s: s.update(serving={"cutover": "auto"}), "spec.serving.cutover", "'Auto'"),
]


@pytest.mark.parametrize(("mutate", "path", "fragment"), BAD_SPECS)
def test_bad_spec_names_the_field(spec_dict, mutate, path, fragment):
    mutate(spec_dict)
    found = problems(spec_dict)
    assert found, "the spec should have been rejected"
    assert any(p == path and fragment in m for p, m in found), found


def test_valid_variants_pass(spec_dict):
    spec_dict["tasks"][0]["taxonomy"] = "ordinal"
    spec_dict["tasks"][0]["metric"] = "macro_f1"
    spec_dict["tasks"][1]["metric"] = "chrf"
    spec_dict["tasks"][0]["data"]["eval"] = "https://example.com/eval.jsonl"
    spec_dict["tasks"][1]["data"]["train"] = "hf://datasets/org/name/train.jsonl"
    spec_dict["recipe"] = {"taskFiltering": "byTaxonomy", "keep": "all-as-adapters"}
    spec_dict["training"] = {"nodes": 4, "runtime": "jobset"}
    spec_dict["serving"] = {"engine": "vllm", "autoscaling": {"maxReplicas": 4}}
    assert problems(spec_dict) == []


def test_format_path():
    assert format_path(["spec", "tasks", 2, "metric"]) == "spec.tasks[2].metric"
