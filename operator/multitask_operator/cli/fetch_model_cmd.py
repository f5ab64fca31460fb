"""`mtm fetch-model`: the storage initializer of the inference pods (spec.serving.modelStorage).

    mtm fetch-model --from s3://models/support-assistant/1a2b3c4d --to /mnt/models/model

Copies a model the publish step published into a local folder (the pod's emptyDir), once: a
folder already fetched is kept (a restarted init container does not copy it again). Runs in the
operator's image, which is small next to the trainer's.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("fetch-model")
@click.option("--from", "source", required=True, metavar="URI",
              help="s3://BUCKET/PREFIX/REV or pvc://CLAIM/PATH/REV (mounted under /mnt/pvc).")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Local folder to fill (its parent must exist).")
def fetch_model(source: str, dest: Path) -> None:
    """Copy a published model into a local folder (the inference pods' init container)."""
    from ..objectstore import StoreError, fetch

    try:
        done = fetch(source, dest, "the Secret named by spec.serving.modelStorage.secret")
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    if done["skipped"]:
        click.echo(f"{dest}: already fetched")
    else:
        click.echo(f"{source} -> {dest}: {done['files']} files, {done['bytes']} bytes")
