"""All terminal output: the one module that imports rich.

Consoles are made per call, bound to the streams of the moment, so that
tests capturing stdout and stderr see everything. Data goes to stdout;
messages, errors and progress to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from metanode_storage.errors import MetanodeError


def _out() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


def line(text: str) -> None:
    """A plain line on stdout (no markup: ids and paths print as they are)."""
    _out().print(text, markup=False)


def note(text: str) -> None:
    _err().print(text, markup=False)


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def error(exc: MetanodeError) -> None:
    message = f"metanode: error: {exc.message}"
    if exc.hint:
        message += f" ({exc.hint})"
    _err().print(f"[red]{_escape(message)}[/red] [dim]\\[{exc.reference}][/dim]")


def fatal(text: str) -> None:
    _err().print(f"[red]metanode: {_escape(text)}[/red]")


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*row)
    _out().print(grid)


def key_values(pairs: Sequence[tuple[str, str]]) -> None:
    out = _out()
    for key, value in pairs:
        out.print(f"{key}: {value}", markup=False)


class ByteProgress:
    """A byte-count progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[ByteProgress]:
    """Bytes done, with transfer speed."""
    columns = (DownloadColumn(), TransferSpeedColumn())
    with _progress(description, total, columns) as bar:
        yield bar


@contextmanager
def count_progress(description: str, total: int | None) -> Iterator[ByteProgress]:
    """Items done (blocks, chunks)."""
    with _progress(description, total, (MofNCompleteColumn(),)) as bar:
        yield bar


@contextmanager
def _progress(
    description: str, total: int | None, columns: tuple[ProgressColumn, ...]
) -> Iterator[ByteProgress]:
    if not sys.stderr.isatty():
        yield ByteProgress(None, None)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        *columns,
        TimeRemainingColumn(),
        console=_err(),
        transient=True,
    )
    with progress:
        yield ByteProgress(progress, progress.add_task(description, total=total))
