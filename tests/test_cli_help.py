"""The command line's own text: every --help reads cleanly, and ``harness list suites PATTERN`` filters."""

from __future__ import annotations

import re

import pytest
import typer.main

from harness.cli import app
from tests.conftest import cli

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_shows_no_bool_type_and_no_stripped_text(command):
    res = cli(*([command] if command else []), "--help")
    assert res.returncode == 0, res.stderr
    assert "--help" in res.stdout and "Show this message and exit." in res.stdout
    assert "<bool>" not in res.stdout  # a flag takes no value
    assert not re.search(r" \.(\s|$)", res.stdout, re.M), res.stdout  # text in [...] eaten as markup leaves " ."


def test_help_keeps_the_defaults_written_in_option_help():
    out = cli("run", "--help").stdout
    assert "(default: cores / workers)" in out and "(default: the suite's)" in out
    assert "show" in COMMANDS and "--data-root" in cli("show", "--help").stdout


def test_list_suites_honours_the_pattern(tmp_path):
    (tmp_path / "suites").mkdir()
    for name in ("mnist", "mnist_small", "cifar10"):
        (tmp_path / "suites" / f"{name}.yaml").write_text(f"description: the {name} suite\n")
    listed = cli("list", "suites", "mnist*", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "the mnist suite" in listed.stdout and "the mnist_small suite" in listed.stdout
    assert "cifar10" not in listed.stdout
    assert cli("list", "suites", "*10", cwd=tmp_path).stdout.count("suites/") == 1
    assert cli("list", "suites", cwd=tmp_path).stdout.count("suites/") == 3  # no pattern: every suite
