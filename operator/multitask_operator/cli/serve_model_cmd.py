"""`mtm serve-model DIR`: a development stand-in for TGI, serving DIR with transformers on CPU.

    mtm serve-model runs/demo/export --port 8081

For development and tests only; production serves through text-generation-inference or vLLM.
"""

import click


@click.command("serve-model")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(1, 65535))
@click.option("--max-total-tokens", type=click.IntRange(2), default=None,
              help="Prompt plus generated tokens; default: the model's context length.")
def serve_model(directory: str, host: str, port: int, max_total_tokens: int | None) -> None:
    """Serve an exported model over TGI's API (development only; use TGI or vLLM in production)."""
    from multitask_devserver.server import create_dev_app
    from multitask_gateway.serve import run

    try:
        app = create_dev_app(directory, max_total_tokens=max_total_tokens)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    except (OSError, ValueError) as error:
        raise click.ClickException(
            f"{directory}: cannot load a model and tokenizer from it: {error}"
        ) from None
    click.echo(f"serving {directory} on http://{host}:{port} (development stand-in for TGI)")
    run(app, host, port)
