"""docs/trainer.md's options table lists exactly the trainer's options (beyond the workspace,
spec and stage that its Steps section shows), so the page cannot drift from the program."""

from __future__ import annotations

import re

import pytest
from multitask_trainer.__main__ import parse_args

from tests.conftest import REPO


def test_the_options_table_matches_the_trainers_options(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    program = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", capsys.readouterr().out))
    program -= {"--help", "--workspace", "--spec", "--stage"}
    page = (REPO / "docs" / "trainer.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `(--[a-z][a-z-]+)", page, flags=re.MULTILINE))
    assert table == program and len(program) >= 6
