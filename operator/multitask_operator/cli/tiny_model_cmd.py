"""`mtm tiny-model OUT_DIR`: write a tiny random Llama and byte-level tokenizer (tests, demo)."""

import click


@click.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--corpus", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="JSON Lines of {input, output} to learn BPE merges from (repeatable).")
@click.option("--vocab-size", default=512, show_default=True)
@click.option("--hidden", default=64, show_default=True)
@click.option("--layers", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
def tiny_model(out_dir: str, corpus: tuple[str, ...], vocab_size: int, hidden: int,
               layers: int, seed: int) -> None:
    """Write a tiny randomly initialised Llama causal LM and its tokenizer to OUT_DIR."""
    from multitask_trainer.tiny_model import make_tiny_model

    path = make_tiny_model(out_dir, corpus=corpus, vocab_size=vocab_size, hidden=hidden,
                           layers=layers, seed=seed)
    click.echo(f"wrote a tiny Llama model and tokenizer to {path}")
