"""`mtm gateway`: run the per-task gateway in front of a TGI or vLLM server.

    mtm gateway --config gateway.json --upstream http://127.0.0.1:8081 --engine tgi --port 8080

In a cluster the operator runs this in the gateway Deployment with the ConfigMap it rendered;
locally, point --upstream at `mtm serve-model DIR` (or a real TGI/vLLM).
"""

import contextlib
from pathlib import Path

import click


@click.command("gateway")
@click.option("--config", "config_path", required=True,
              type=click.Path(exists=True),
              help="Gateway config JSON (tasks, prompt format, limits; see docs/serving.md), "
                   "or a model export directory (its tasks.json and prompt_format.json).")
@click.option("--upstream", required=True,
              help="Base URL of the inference server, e.g. http://127.0.0.1:8081.")
@click.option("--engine", type=click.Choice(["tgi", "vllm"]), default="tgi", show_default=True,
              help="API the upstream speaks: TGI's, or vLLM's OpenAI-compatible one.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
def gateway(config_path: str, upstream: str, engine: str, host: str, port: int) -> None:
    """Route per-task requests to one multi-task model."""
    from multitask_gateway.app import Gateway
    from multitask_gateway.config import ConfigError, config_from_export, load_config
    from multitask_gateway.serve import run
    from multitask_gateway.upstream import make_upstream
    from multitask_gateway.watch import follow

    if not upstream.startswith(("http://", "https://")):
        raise click.BadParameter(f"'{upstream}' is not an http:// or https:// URL",
                                 param_hint="--upstream")
    try:
        current = None
        if Path(config_path).is_dir():
            config = config_from_export(config_path)
        else:
            with contextlib.suppress(OSError):  # (load_config says why it cannot read it)
                current = Path(config_path).read_bytes()  # before parsing: no change missed
            config = load_config(config_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    client = make_upstream(engine, upstream, config.limits.timeout_seconds,
                           config.served_model_name or config.model)
    click.echo(f"gateway for {len(config.tasks)} tasks -> {engine} at {upstream}, "
               f"listening on {host}:{port}")
    server = Gateway(config, client)
    app = server.app()
    if current is not None:  # a rollout step rewrites the file: adopted without a restart
        follow(app, server, Path(config_path), current)
    run(app, host, port, config.limits.idle_timeout_seconds)
