"""Turning a client's request into what the inference server is asked, for one task.

A request for task T carries only T's input text (old clients sent exactly that to T's own
service). The gateway wraps it the way training did (instruction + template), caps
max_new_tokens, picks T's LoRA adapter, and for classification constrains the answer to T's
labels with a regex grammar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from . import errors, jsonsafe
from .config import GatewayConfig, TaskRoute
from .constraints import label_grammar, max_label_tokens

# TGI's GenerateParameters (router/src/lib.rs in text-generation-inference): what clients send.
TGI_PARAMETERS = (
    "adapter_id", "best_of", "decoder_input_details", "details", "do_sample",
    "frequency_penalty", "grammar", "max_new_tokens", "repetition_penalty", "return_full_text",
    "seed", "stop", "temperature", "top_k", "top_n_tokens", "top_p", "truncate", "typical_p",
    "watermark",
)
_BOOL = ("decoder_input_details", "details", "do_sample", "return_full_text", "watermark")
_INT = ("best_of", "max_new_tokens", "seed", "top_k", "top_n_tokens", "truncate")
_FLOAT = ("frequency_penalty", "repetition_penalty", "temperature", "top_p", "typical_p")


@dataclass
class Generation:
    """One request to the inference server, and how to turn its answer back."""

    task: TaskRoute
    inputs: str  # what the client sent, before the template
    prompt: str  # what the model sees
    parameters: dict[str, Any]  # TGI parameters for the upstream
    stream: bool = False
    client_details: bool = False  # whether the client asked for details
    prepend_inputs: bool = False  # the client asked for return_full_text

    def finish_text(self, generated: str) -> str:
        """What the client gets as generated_text: with its own input in front if it asked for
        the full text (the upstream would have put the templated prompt there instead)."""
        return self.inputs + generated if self.prepend_inputs else generated

    def check_label(self, generated: str) -> None:
        if self.task.classification and generated not in self.task.labels:
            raise errors.bad_upstream(
                f"the inference server answered {generated[:80]!r} for classification task "
                f"'{self.task.name}', which is not one of its labels; does it support regex "
                "grammars?"
            )


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        data = jsonsafe.loads(body)
        if jsonsafe.may_need_check(body):
            jsonsafe.check_tree(data)
    except jsonsafe.JsonProblem as problem:
        message = problem.message if problem.path else f"the request body {problem.message}"
        raise errors.GatewayError(400, message, "bad_request", problem.path) from None
    except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
        raise errors.GatewayError(
            400, f"the request body is not valid JSON: {error}", "bad_request"
        ) from None
    if not isinstance(data, dict):
        raise errors.GatewayError(400, "the request body must be a JSON object", "bad_request")
    return data


# Ranges TGI's router enforces (router/src/validation.rs); checked here so that a client's
# mistake is the gateway's 422 naming the parameter, not the upstream's 500 or a 502.
_BOUNDS: dict[str, tuple[float | None, bool, float | None]] = {
    # name: (low, low is exclusive, high inclusive)
    "temperature": (0, True, None),
    "repetition_penalty": (0, True, None),
    "frequency_penalty": (-2, False, 2),
    "top_p": (0, True, 1),
    "typical_p": (0, True, 1),
    "top_k": (1, False, None),
    "best_of": (1, False, None),
    "truncate": (1, False, None),
    "top_n_tokens": (0, False, None),
    "seed": (0, False, 2**64 - 1),
}


def _check_bounds(key: str, value: float) -> None:
    if not math.isfinite(value):
        raise errors.validation(f"parameters.{key} must be a finite number, got {value}",
                                f"parameters.{key}")
    low, exclusive, high = _BOUNDS.get(key, (None, False, None))
    if low is not None and (value <= low if exclusive else value < low):
        relation = ">" if exclusive else ">="
        raise errors.validation(f"parameters.{key} must be {relation} {low:g}, got {value}",
                                f"parameters.{key}")
    if high is not None and value > high:
        raise errors.validation(f"parameters.{key} must be <= {high:g}, got {value}",
                                f"parameters.{key}")


def check_parameters(raw: Any) -> dict[str, Any]:
    """The client's TGI parameters, type- and range-checked, with nulls dropped."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise errors.validation("parameters must be a JSON object")
    params: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in TGI_PARAMETERS:
            raise errors.validation(
                f"parameters.{str(key)[:80]} is not a text-generation parameter; accepted: "
                + ", ".join(TGI_PARAMETERS)
            )
        if value is None:
            continue
        if key in _BOOL and not isinstance(value, bool):
            raise errors.validation(f"parameters.{key} must be true or false")
        if key in _INT and (isinstance(value, bool) or not isinstance(value, int)):
            raise errors.validation(f"parameters.{key} must be an integer")
        if key in _FLOAT and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise errors.validation(f"parameters.{key} must be a number")
        if key in _INT or key in _FLOAT:
            _check_bounds(key, value)
        if key == "stop" and (
            not isinstance(value, list) or not all(isinstance(s, str) for s in value)
        ):
            raise errors.validation("parameters.stop must be a list of strings")
        if key == "adapter_id" and not isinstance(value, str):
            raise errors.validation("parameters.adapter_id must be a string")
        if key == "grammar" and (not isinstance(value, dict) or "type" not in value):
            raise errors.validation("parameters.grammar must be {\"type\": ..., \"value\": ...}")
        params[key] = value
    return params


def build(
    config: GatewayConfig,
    task: TaskRoute,
    inputs: Any,
    raw_params: Any,
    stream: bool,
    field: str = "inputs",
) -> Generation:
    """Validate a client's request for `task` and build the upstream request; `field` is what
    the request calls its input text (TGI: inputs; the task API: input)."""
    if not isinstance(inputs, str) or not inputs:
        raise errors.validation(f"{field} must be a non-empty string: the task's input text")
    params = check_parameters(raw_params)
    limits = config.limits
    requested = params.get("max_new_tokens")
    if requested is not None and not 1 <= requested <= limits.max_new_tokens:
        raise errors.validation(
            f"parameters.max_new_tokens must be between 1 and {limits.max_new_tokens} "
            f"(the gateway's limit), got {requested}"
        )
    adapter = params.get("adapter_id")
    if adapter is not None and adapter != task.adapter:
        raise errors.validation(
            f"parameters.adapter_id: the gateway picks the adapter of task '{task.name}' "
            f"({task.adapter or 'none, the merged model'}); leave adapter_id out"
        )
    if task.adapter:
        params["adapter_id"] = task.adapter
    if task.classification:
        if "grammar" in params:
            raise errors.validation(
                f"parameters.grammar: task '{task.name}' is a classification task, its answers "
                "are constrained to its labels by the gateway; leave grammar out"
            )
        params["grammar"] = label_grammar(task.labels)
        # A shorter budget or a stop sequence could cut a label in half.
        params["max_new_tokens"] = max_label_tokens(task.labels)
        params.pop("stop", None)
    else:
        params.setdefault("max_new_tokens", limits.default_max_new_tokens)
    client_details = bool(params.get("details"))
    prepend = bool(params.pop("return_full_text", False))
    return Generation(
        task=task,
        inputs=inputs,
        prompt=config.prompt_format.render(task.instruction, inputs),
        parameters=params,
        stream=stream,
        client_details=client_details,
        prepend_inputs=prepend,
    )
