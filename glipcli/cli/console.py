"""How every command talks: rich consoles, one-line errors, progress bars and the shared reports.

Errors a user can cause (GlipError) become one line on stderr and a non-zero exit code; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from glipcli.errors import GlipError

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich Console made on first use: importing rich is 0.03 s of start-up that a command which
    prints nothing (``glip detect -q --json x.json``) never needs."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


console: Console = _LazyConsole()  # type: ignore[assignment]
err_console: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(func: F) -> F:
    """Turn GlipError into 'error: <message>' on stderr and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GlipError as exc:
            from rich.markup import escape  # messages hold file names and commands, e.g. "glipcli[ray]"

            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_selection(settings: dict[str, Any], out: Console) -> None:
    """One line: the threshold used and where it came from, and the selection (on stderr when stdout carries JSON)."""
    from rich.markup import escape

    source = "--threshold" if settings["threshold_source"] == "given" else settings["threshold_source"]
    classes = "".join(f", {escape(name)} {value:g}" for name, value in settings["class_thresholds"].items())
    if "new_names" in settings:
        count = len(settings["new_names"])
        classes = f", {settings['new_name_threshold']:g} for {count} new class{'es' if count > 1 else ''}{classes}"
    labels = "one label per object" if settings["one_label"] else "all labels (GLIP's output)"
    out.print(
        f"threshold {settings['threshold']:g} ({escape(source)}){classes}; {labels}", highlight=False, soft_wrap=True
    )


def print_tuned_note(detector: Any, captions: list[str]) -> None:
    """Say on stderr whether the model's tuned prompts apply to a prompt's chunk ``captions``
    (stdout may carry JSON)."""
    from rich.markup import escape

    tuned = detector.tuned_captions
    if not tuned:
        return
    used = [caption for caption in captions if caption in tuned]
    if used:
        share = f" ({len(used)} of {len(captions)} chunks)" if len(used) < len(captions) else ""
        err_console.print(f"using tuned prompt {escape(repr(used[0]))}{share}", highlight=False, soft_wrap=True)
    else:
        known = ", ".join(repr(c) for c in sorted(tuned)[:3]) + (", ..." if len(tuned) > 3 else "")
        err_console.print(
            f"[yellow]note[/]: this model's tuned prompts ({escape(known)}) do not match this prompt: "
            "the untuned text encoder is used",
            highlight=False,
            soft_wrap=True,
        )


def print_skipped(skipped: list[Any], errors_file: Path | None) -> None:
    """Skipped files grouped by kind of problem, a few names each; the full list is in errors_file."""
    from rich.markup import escape

    from glipcli.progress import group_by_kind

    total = len(skipped)
    where = f" (all listed in {escape(str(errors_file))})" if errors_file else ""
    err_console.print(f"[yellow]skipped {total} file{'s' * (total != 1)}[/]{where}:", highlight=False)
    for kind, items in sorted(group_by_kind(skipped).items(), key=lambda kv: -len(kv[1])):
        names = ", ".join(escape(item.file) for item in items[:3]) + (", ..." if len(items) > 3 else "")
        err_console.print(f"  {escape(kind)}: {len(items)} ({names})", highlight=False)


class ProgressDisplay:
    """A rich progress bar on stderr (images done/total, images/s, ETA, skipped) while on a terminal.

    It starts with the first update, so errors found before any work print alone.
    """

    def __init__(self, description: str, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._progress = None
        self._started = False
        if not quiet and err_console.is_terminal:
            self._progress = Progress(
                TextColumn(description),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} img/s  ETA {task.fields[eta]}  skipped {task.fields[skipped]}"),
                console=err_console,
                transient=True,
            )
            self._task = self._progress.add_task(description, total=None, rate="-", eta="-", skipped=0)

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None and self._started:
            self._progress.stop()

    def update(self, state: Any) -> None:
        if self._progress is None:
            return
        if not self._started:
            self._progress.start()
            self._started = True
        eta = state.eta_seconds
        self._progress.update(
            self._task,
            completed=state.done,
            total=state.total,
            rate=f"{state.images_per_second:.1f}" if state.processed else "-",
            eta=time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else "-",
            skipped=state.skipped,
        )
