"""python -m multitask_operator.cli: the same as the `mtm` console script."""

from . import main

main()
