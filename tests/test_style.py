"""The tree keeps the formatter and linter configuration of pyproject.toml ([tool.ruff]: line length 120)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_the_tree_is_formatted_and_lint_clean(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--no-cache", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, f"ruff {' '.join(command)} (fix with: ruff format . && ruff check --fix .):\n" + (
        result.stdout + result.stderr
    )
