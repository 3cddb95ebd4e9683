"""Every command's --help reads as prose: paragraphs re-wrap to the terminal, examples stay put."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from glipcli.cli import app

COMMANDS = [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_paragraphs_are_unwrapped(command):
    callback = next(c.callback for c in app.registered_commands if (c.name or c.callback.__name__) == command)
    for paragraph in callback.__doc__.split("\n\n"):
        if not paragraph.startswith(" "):
            assert "\n" not in paragraph, paragraph


@pytest.mark.parametrize("command", COMMANDS)
def test_help_runs_and_shows_an_example(command):
    result = CliRunner().invoke(app, [command.rstrip("_"), "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "glip " in result.output
