"""Whatever a spec or data file holds, `mtm validate` and `mtm run` answer with one line per
problem naming the file (and line), never a traceback; `--fresh` deletes only a workspace mtm
created (issue: hardening, I1-I4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from multitask_operator.cli import cli
from multitask_operator.local.pipeline import RunRefused, run_pipeline

from tests.cli.test_validate_and_plan import jsonl, local_spec, write_model
from tests.conftest import manifest


def run(*args: str) -> tuple[int, str]:
    """The command's exit code and output; an exception other than click's exit is a bug (the
    user would have seen a traceback)."""
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.output


def validate(path: Path) -> tuple[int, str]:
    return run("validate", str(path))


def one_line_each(output: str, path: Path) -> list[str]:
    lines = [line for line in output.splitlines() if line.strip()]
    for line in lines:
        assert len(line) < 1000, line[:200]
    assert any(line.startswith(str(path)) for line in lines), output[:500]
    return lines


GOOD = yaml.safe_dump(manifest(local_spec()))


@pytest.mark.parametrize(("content", "fragment"), [
    (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper than 64 levels"),
    (b"a:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 200)),
     "nested deeper than 64 levels"),
    ("kind: café\n".encode("latin-1"), "model.yaml:1: not UTF-8 text: byte 0xe9 at offset 9"),
    (b"kind: Multi\x00TaskModel\n", "model.yaml:1: character #x0000 at offset 11 is not allowed"),
    (b"# nothing\n---\n", "no MultiTaskModel in the file"),
    (b"", "no MultiTaskModel in the file"),
    (GOOD.replace("kind: MultiTaskModel\n", "kind: MultiTaskModel\nkind: Other\n").encode(),
     "key 'kind' appears twice in one mapping (lines"),
])
def test_bad_files_get_one_line(tmp_path, content, fragment):
    path = tmp_path / "model.yaml"
    path.write_bytes(content)
    code, output = validate(path)
    assert code != 0
    assert fragment in output, output[:500]
    one_line_each(output, path)


def test_a_file_over_the_size_cap_is_refused_before_parsing(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    code, output = validate(path)
    assert code != 0
    assert "a MultiTaskModel file may be at most 1048576 bytes (1 MiB" in output


def test_duplicate_keys_name_both_lines(tmp_path):
    spec = local_spec()
    text = yaml.safe_dump(manifest(spec), sort_keys=False)
    text = text.replace("  tasks:\n", "  recipe: {qualifyThreshold: 0.9}\n  tasks:\n", 1)
    text = text.replace("spec:\n", "spec:\n  recipe: {qualifyThreshold: 0.5}\n", 1)
    path = tmp_path / "model.yaml"
    path.write_text(text)
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines, 1) if "qualifyThreshold: 0.5" in line)
    second = next(i for i, line in enumerate(lines, 1) if "qualifyThreshold: 0.9" in line)
    code, output = validate(path)
    assert code != 0
    assert f"model.yaml:{second}: key 'recipe' appears twice in one mapping (lines {first} and " \
           f"{second})" in output


def test_huge_values_are_echoed_cut_short(tmp_path):
    spec = local_spec()
    spec["tasks"][0]["name"] = "X" * 200_000
    spec["tasks"][0]["metric"] = "m" * 100_000
    path = write_model(tmp_path, spec, {"intent.jsonl": jsonl(("a", "refund"), ("b", "other")),
                                        "summary.jsonl": jsonl(("a", "x"))})
    code, output = validate(path)
    assert code != 0
    assert "(200000 characters)" in output and "(100000 characters)" in output
    one_line_each(output, path)


def test_a_huge_data_value_is_echoed_cut_short(tmp_path):
    spec = local_spec()
    bad = json.dumps({"input": "a", "output": "z" * 1_000_000})
    deep = '{"input": "a", "output": ' + "[" * 5000 + "]" * 5000 + "}"
    long_number = '{"input": "a", "output": ' + "7" * 5000 + "}"
    intent = jsonl(("a", "refund"), ("b", "other")) + "\n".join([bad, deep, long_number]) + "\n"
    path = write_model(tmp_path, spec, {"intent.jsonl": intent,
                                        "summary.jsonl": jsonl(("a", "x"))})
    code, output = validate(path)
    assert code != 0
    assert "intent.jsonl:3" in output and "(1000000 characters)" in output
    assert "intent.jsonl:4: spec.tasks[0].data.train: not usable JSON: nested too deeply" in output
    assert "intent.jsonl:5" in output and "4300 digits" in output
    one_line_each(output, tmp_path / "intent.jsonl")


def test_a_long_number_is_refused_whatever_the_interpreters_limit(tmp_path):
    """Python's int digit limit is process-wide and anything in the process may lift it: the
    loader keeps its own."""
    import sys

    previous = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)  # no limit
    try:
        intent = jsonl(("a", "refund")) + '{"input": "a", "output": ' + "7" * 5000 + "}\n"
        path = write_model(tmp_path, local_spec(), {"intent.jsonl": intent,
                                                    "summary.jsonl": jsonl(("a", "x"))})
        code, output = validate(path)
    finally:
        sys.set_int_max_str_digits(previous)
    assert code != 0
    assert ("intent.jsonl:2: spec.tasks[0].data.train: not usable JSON: an integer of 5000 "
            "digits (at most 4300 digits)") in output


def test_fresh_deletes_only_a_workspace_mtm_created(tmp_path):
    path = write_model(tmp_path, local_spec(), {
        "intent.jsonl": jsonl(("a", "refund"), ("b", "other")),
        "summary.jsonl": jsonl(("a", "x"))})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(RunRefused) as refused:
        run_pipeline(str(path), workspace=precious, fresh=True)
    assert refused.value.problems == [
        f"--fresh: {precious} was not created by mtm (it has no .mtm-workspace marker), so it "
        "is not deleted; delete it yourself if you mean to, or pick another --workspace"]
    assert (precious / "thesis.tex").read_text() == "years of work"
    code, output = run("run", str(path), "--workspace", str(precious), "--fresh")
    assert code == 1 and "was not created by mtm" in output and "Traceback" not in output


def test_an_odd_unknown_key_is_quoted_on_one_line(tmp_path):
    """Found by tests/test_fuzz.py: an unknown key holding a newline broke the line."""
    spec = local_spec()
    spec["tasks"][1]["data"]["\n"] = None
    path = write_model(tmp_path, spec, {"intent.jsonl": jsonl(("a", "refund"), ("b", "other")),
                                        "summary.jsonl": jsonl(("a", "x"))})
    code, output = validate(path)
    assert code != 0
    assert 'spec.tasks[1].data["\\n"]: unknown field; accepted here: eval, evalFraction, train' \
        in output
    one_line_each(output, path)
