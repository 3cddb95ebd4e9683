"""Every command's --help reads as prose: paragraphs re-wrap to the terminal, examples stay put."""

from __future__ import annotations

import os
import subprocess
import sys

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


def _glip(entry: str, *args: str) -> subprocess.CompletedProcess:
    code = f"import sys; from glipcli.cli import {entry}; sys.argv[0] = 'glip'; {entry}()"
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args",
    [*([c.rstrip("_"), "--help"] for c in COMMANDS), ["detect"], ["label", "--nope"], ["--version"], ["detcet"], []],
)
def test_the_console_script_answers_as_the_whole_app(args):
    """``glip`` builds only the command it is asked for (run); help, errors and exit codes must not
    tell the difference."""
    whole, single = _glip("app", *args), _glip("run", *args)
    assert (single.returncode, single.stdout, single.stderr) == (whole.returncode, whole.stdout, whole.stderr)
    assert single.stdout or single.stderr
