"""The export step: an inference-ready model directory for TGI or vLLM.

    python -m multitask_trainer export --workspace DIR

One kept group (the usual case): export/ holds merged full weights (LoRA folded into the base,
safetensors), config, generation config and tokenizer, loadable by `from_pretrained`, TGI
(`--model-id /model`) and vLLM. Several groups kept as adapters (recipe.keep all-as-adapters):
export/base/ holds the base model and export/adapters/<group>/ one PEFT adapter each, which
TGI (`LORA_ADAPTERS`) and vLLM (`--lora-modules`) serve next to the base.

Either way export/prompt_format.json is the prompt wrapping training used (the gateway must
send exactly that) and export/tasks.json says, per served task, its instruction, type, labels
and adapter.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from multitask_operator.api import MultiTaskModelSpec, Plan
from multitask_operator.api.results import ExportResult
from multitask_operator.prompting import format_for_tokenizer
from multitask_operator.workspace import Workspace, publish, read_marker

from .errors import TrainerError
from .modelio import is_adapter, load_base, load_stage
from .prepare import load_manifest

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def group_stages(plan: Plan) -> dict[str, str]:
    """The stage whose result serves each kept group: the last non-baseline stage of it."""
    found: dict[str, str] = {}
    for stage in plan.stages:
        if stage.kind != "baseline" and stage.group is not None:
            found[stage.group] = stage.name
    missing = [g for g in plan.groups if g not in found]
    if missing:
        raise TrainerError(f"plan.json has no training stage for group(s) {', '.join(missing)}")
    return found


def export(spec: MultiTaskModelSpec, ws: Workspace, plan: Plan) -> dict[str, Any]:
    from transformers import AutoTokenizer

    if ws.exported():
        marker = read_marker(ws.export_dir) or {}
        return ExportResult.model_validate({**marker, "skipped": True}).to_details()
    stages = group_stages(plan)
    for stage in stages.values():
        if not ws.stage_done(stage):
            raise TrainerError(f"stage {stage} has not finished; train it before exporting")
    adapters = len(stages) > 1
    manifest = load_manifest(ws)["tasks"]
    first = next(iter(stages.values()))
    tokenizer = AutoTokenizer.from_pretrained(ws.final_dir(first))
    tasks = [
        {
            "name": t.name,
            "type": t.type,
            "instruction": spec.task(t.name).instruction,
            "labels": manifest[t.name]["labels"],
            "adapter": t.group if adapters else None,
        }
        for t in plan.tasks
        if t.included
    ]
    layout = "adapters" if adapters else "merged"
    prompt_format = format_for_tokenizer(tokenizer)
    # In the marker and the result: the operator passes the prompt format to the gateway.
    summary = {"layout": layout, "groups": list(stages),
               "promptFormat": json.loads(prompt_format.to_json())}
    with publish(ws.export_dir, summary) as scratch:
        if adapters:
            base_dir = scratch / "base"
            load_base(spec, "auto").save_pretrained(base_dir, safe_serialization=True)
            tokenizer.save_pretrained(base_dir)
            for group, stage in stages.items():
                final = ws.final_dir(stage)
                if not is_adapter(final):
                    raise TrainerError(f"recipe.keep all-as-adapters needs training.method "
                                       f"lora; stage {stage} holds full weights")
                target = scratch / "adapters" / group
                target.mkdir(parents=True)
                for name in ADAPTER_FILES:
                    shutil.copy2(final / name, target / name)
        else:
            model = load_stage(spec, ws, first, "auto", trainable=False)
            if hasattr(model, "merge_and_unload"):
                model = model.merge_and_unload()
            model.save_pretrained(scratch, safe_serialization=True)
            tokenizer.save_pretrained(scratch)
        (scratch / "prompt_format.json").write_text(prompt_format.to_json())
        (scratch / "tasks.json").write_text(json.dumps({"tasks": tasks}, indent=2) + "\n")
    return ExportResult.model_validate(
        {**summary, "skipped": False, "tasks": len(tasks)}).to_details()
