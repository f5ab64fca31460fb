"""Missing binaries skip the chart tests locally but fail them in CI (tests/chart/tools.py).

    .venv/bin/python -m pytest tests/chart/test_chart_tools.py -q
"""

from __future__ import annotations

import pytest

from .tools import find_tool

MISSING = "mtm-no-such-tool"


def test_a_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="make tools"):
        find_tool(MISSING)


def test_a_missing_tool_skips_locally_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="scripts/install-tools.sh"):
        find_tool(MISSING)


def test_an_installed_tool_is_found_in_tools_bin_or_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert find_tool("sh").endswith("/sh")
