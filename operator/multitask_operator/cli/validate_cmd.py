"""`mtm validate FILE...`: check MultiTaskModel files and the local data they name.

Exit 0 with one line per valid object; exit 1 with one line per problem, each naming the file
(and line), the field path and what is accepted.
"""

from __future__ import annotations

import click

from ..loader import check_data, load_file


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--no-data", is_flag=True, help="Do not read the data files named by the spec.")
def validate(files: tuple[str, ...], no_data: bool) -> None:
    """Check MultiTaskModel YAML files (multi-document files too) and their local data."""
    failed = False
    for file in files:
        result = load_file(file)
        problems = list(result.problems)
        valid_lines = []
        for doc in result.documents:
            meta = doc.model.metadata
            name = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
            tasks = len(doc.model.spec.tasks)
            if no_data:
                valid_lines.append(f"{file}: MultiTaskModel {name} is valid ({tasks} tasks)")
                continue
            data = check_data(doc)
            if data.problems:
                problems.extend(data.problems)
                continue
            note = f"; {len(data.remote)} remote data locations not checked" if data.remote else ""
            examples = sum(data.counts.values())
            valid_lines.append(
                f"{file}: MultiTaskModel {name} is valid ({tasks} tasks, "
                f"{examples} local training examples{note})"
            )
        for line in valid_lines:
            click.echo(line)
        for problem in problems:
            click.echo(str(problem))
        failed = failed or bool(problems)
    raise SystemExit(1 if failed else 0)
