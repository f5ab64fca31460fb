"""`mtm crd`: print the CustomResourceDefinition generated from the API models."""

import click

from ..api.crd import render_crd_yaml


@click.command()
def crd() -> None:
    """Print the MultiTaskModel CRD (what `make crds` writes to crds/)."""
    click.echo(render_crd_yaml(), nl=False)
