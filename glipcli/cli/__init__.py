"""The ``glip`` command: a thin Typer layer over the Python API, one module per command or group.

Commands parse options (declared once in ``options``), call the library and print with rich
(``console``). Errors a user can cause (GlipError) become one line on stderr and a non-zero exit
code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from glipcli import __version__
from glipcli.cli.console import console
from glipcli.cli.detect import detect
from glipcli.cli.evaluation import calibrate, eval_
from glipcli.cli.export import export
from glipcli.cli.handoff import convert, review
from glipcli.cli.info import info
from glipcli.cli.label import label
from glipcli.cli.namer import namer
from glipcli.cli.train import train, tune


def _version(value: bool) -> None:
    if value:
        console.print(f"glipcli {__version__}")
        raise typer.Exit()


def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime."""


def _unwrap(doc: str) -> str:
    """Docstring paragraphs as one line each, so rich re-wraps them to the terminal's width;
    indented lines (examples) keep their own lines."""
    paragraphs = []
    for block in inspect.cleandoc(doc).split("\n\n"):
        lines = block.splitlines()
        if any(line.startswith(" ") for line in lines):
            paragraphs.append(block)
        else:
            paragraphs.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(paragraphs)


COMMANDS = [export, detect, info, label, eval_, calibrate, train, tune, namer, convert, review]
"""In the order ``glip --help`` lists them."""

for _command in COMMANDS:
    _command.__doc__ = _unwrap(_command.__doc__ or "")


def _app(commands: list[Callable[..., Any]]) -> typer.Typer:
    """The ``glip`` group with ``commands``."""
    group = typer.Typer(
        name="glip",
        help="Open-vocabulary detection and auto-annotation with GLIP, on ONNX Runtime.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )
    group.callback()(main)
    for command in commands:
        group.command(name=command.__name__.rstrip("_"))(command)
    return group


app = _app(COMMANDS)


def run() -> None:
    """The ``glip`` console script: ``app`` with only the command named on the command line.

    Typer reads every command's signature and annotations before it dispatches (35-60 ms for ten
    commands, a tenth of ``glip detect``'s start-up); ``glip detect ...`` needs only detect's.
    Anything else (no command, ``--help``, ``--version``, a typo) gets the whole app, so help and
    errors are the same.
    """
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    asked = [c for c in COMMANDS if c.__name__.rstrip("_") == name]
    (_app(asked) if asked else app)()
