"""The gateway config loader names the file and field of every mistake; label regexes
round-trip between the gateway (writer) and the dev server (reader)."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multitask_gateway.config import ConfigError, config_from_export, load_config, parse_config
from multitask_gateway.constraints import label_regex, literal_alternatives, max_label_tokens

GOOD = {
    "tasks": [
        {"name": "intent", "type": "classification", "instruction": "Classify.",
         "labels": ["a", "b"], "service": "intent-svc"},
        {"name": "summary", "type": "generation", "instruction": "Summarise."},
    ],
}


def with_change(path: str, value) -> dict:
    raw = json.loads(json.dumps(GOOD))
    node = raw
    *parents, leaf = path.split(".")
    for key in parents:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[leaf] = value
    return raw


def test_good_config():
    config = parse_config(GOOD)
    assert config.by_service == {"intent-svc": config.tasks["intent"]}
    assert config.limits.max_new_tokens == 512


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("tasks.0.type", "ranking", r"tasks\[0\]\.type must be classification or generation"),
        ("tasks.0.labels", ["a"], r"tasks\[0\]\.labels: a classification task needs at least 2"),
        ("tasks.1.labels", ["a", "b"], r"tasks\[1\]\.labels: only classification tasks"),
        ("tasks.1.name", "Summary", r"tasks\[1\]\.name 'Summary' is not a DNS-1123 label"),
        ("tasks.1.name", "intent", r"tasks\[1\]\.name 'intent' appears twice"),
        ("tasks.1.service", "intent-svc", r"tasks\[1\]\.service 'intent-svc' is already"),
        ("tasks.1.color", "red", r"tasks\[1\]\.color is not a task field"),
        ("limits.maxNewTokens", 0, r"limits\.maxNewTokens must be a positive number"),
        ("limits.maxNewTokens", True, r"limits\.maxNewTokens must be a positive number"),
        ("limits.speed", 1, r"limits\.speed is not a limit; accepted: maxBodyBytes"),
        ("limits.defaultMaxNewTokens", 9999,
         r"limits\.defaultMaxNewTokens \(9999\) must not exceed"),
        ("promptFormat", {"prefix": 1, "suffix": ""}, r"promptFormat\.prefix must be a string"),
        ("tasks", [], r"tasks must be a non-empty list"),
    ],
)
def test_mistakes_name_the_field(path, value, message):
    with pytest.raises(ConfigError, match="^gw.json: " + message):
        parse_config(with_change(path, value), "gw.json")


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "gw.json"
    path.write_text('{\n  "tasks": [\n  oops\n]}')
    with pytest.raises(ConfigError, match=r"gw.json:3: not valid JSON"):
        load_config(path)


def test_config_from_an_export_directory(tmp_path):
    (tmp_path / "tasks.json").write_text(json.dumps({"tasks": [
        {"name": "intent", "type": "classification", "instruction": "C.", "labels": ["x", "y"],
         "adapter": None},
        {"name": "summary", "type": "generation", "instruction": "S.", "labels": None,
         "adapter": None},
    ]}))
    (tmp_path / "prompt_format.json").write_text(
        json.dumps({"prefix": "<u>", "suffix": "<a>", "source": "chat_template"}))
    config = config_from_export(tmp_path)
    assert config.tasks["intent"].labels == ("x", "y")
    assert config.prompt_format.prefix == "<u>"


def test_a_directory_without_an_export_is_named(tmp_path):
    with pytest.raises(ConfigError, match="not a model export"):
        config_from_export(tmp_path)


labels_strategy = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=6, unique=True)


@given(labels_strategy)
def test_label_regex_round_trips(labels):
    assert literal_alternatives(label_regex(labels)) == labels


@given(labels_strategy)
def test_label_regex_matches_exactly_the_labels(labels):
    pattern = re.compile(label_regex(labels), re.DOTALL)
    for label in labels:
        assert pattern.fullmatch(label)
    assert not pattern.fullmatch(labels[0] + labels[1] + "\x00")


def test_max_label_tokens_counts_bytes():
    assert max_label_tokens(["ab", "é"]) == 3  # "é" is 2 bytes; +1 for EOS


@pytest.mark.parametrize("regex", ["[a-z]+", "(a|b)*", "a|\\d", "(a|(b|c))", "a||b"])
def test_non_literal_regexes_are_refused(regex):
    with pytest.raises(ValueError):
        literal_alternatives(regex)


def test_a_lower_cap_lowers_the_default():
    limits = parse_config(with_change("limits.maxNewTokens", 64)).limits
    assert (limits.max_new_tokens, limits.default_max_new_tokens) == (64, 64)
