"""All terminal output: the one module that imports rich.

Consoles are made per call, bound to the streams of the moment, so that
tests capturing stdout and stderr see everything. Data goes to stdout;
messages, errors and progress to stderr.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

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
from rich.text import Text

from metanode_storage.errors import InputError, MetanodeError
from metanode_storage.fileio import output_refused


class ClosedOutput(io.TextIOBase):
    """Stands in for a standard output the caller closed (``>&-``): any write is a clear
    input/output error (exit 7), as it is for `cat` and `ls`, never a crash."""

    def writable(self) -> bool:
        return True

    def write(self, _: Any) -> int:
        raise InputError("cannot write the output: standard output is closed")

    @property
    def buffer(self) -> ClosedOutput:
        return self


def guard_standard_streams() -> None:
    """Called once at start: Python sets a closed standard stream to None."""
    if sys.stdout is None:
        sys.stdout = ClosedOutput()
    if sys.stderr is None:  # nowhere to say anything; the exit code still tells
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process


def binary_stdout() -> BinaryIO:
    """Standard output for data, checked before any work is done for it."""
    if sys.stdout is None or isinstance(sys.stdout, ClosedOutput):
        raise InputError(
            "cannot write the output: standard output is closed", "redirect it, or use -o FILE"
        )
    return sys.stdout.buffer


def binary_stdin() -> BinaryIO:
    if sys.stdin is None:
        raise InputError("cannot read the input: standard input is closed", "redirect a file")
    return sys.stdin.buffer


def _out() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(file=sys.stderr, highlight=False, soft_wrap=True)


# Control characters (C0 but tab and newline, DEL, C1). A name or path may hold escape
# sequences that recolour, retitle or rewrite the operator's terminal: they print as
# \xNN, as `ls -b` shows them. So do the bytes of a file name that is not UTF-8 (Python
# holds them as lone surrogates, which a strict UTF-8 stdout refuses to encode). JSON
# output escapes both itself.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udcff]")


def visible(text: str) -> str:
    """``text`` with its control characters and undecodable bytes shown as escapes."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found[0]) & 0xFF:02x}", text)


@contextmanager
def _writing_stdout() -> Iterator[None]:
    """Text for stdout: a full disk or a closed pipe behind it is a clear input/output
    error (exit 7), as it is for `get`'s bytes, not an internal error."""
    try:
        yield
    except OSError as exc:
        raise output_refused(exc) from None


def line(text: str) -> None:
    """A plain line on stdout (no markup: ids and paths print as they are)."""
    with _writing_stdout():
        _out().print(visible(text), markup=False)


def note(text: str) -> None:
    _err().print(visible(text), markup=False)


def warn(text: str) -> None:
    _err().print(f"metanode: warning: {visible(text)}", markup=False)


def emit_json(document: Any) -> None:
    text(json.dumps(document, indent=2, sort_keys=True) + "\n")


def text(content: str) -> None:
    """Text as it is (a checkpoint note, a JSON document), on stdout."""
    with _writing_stdout():
        sys.stdout.write(content)
        sys.stdout.flush()


def error(exc: MetanodeError) -> None:
    message = f"metanode: error: {exc.message}"
    if exc.hint:
        message += f" ({exc.hint})"
    message = " ".join(message.split())  # one line, whatever a message quoted
    _err().print(f"[red]{_escape(message)}[/red] [dim]\\[{exc.reference}][/dim]")


def fatal(text: str) -> None:
    _err().print(f"[red]metanode: {_escape(text)}[/red]")


def _escape(text: str) -> str:
    """For a string inside markup: its own brackets and control characters inert."""
    return visible(text).replace("[", "\\[")


def table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    whole: Sequence[str] = (),
) -> None:
    """A table on stdout; the ``whole`` columns (ids to copy) are never cut or wrapped."""
    grid = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if column in whole:
            widest = max((len(row[index]) for row in rows), default=len(column))
            grid.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            grid.add_column(column)
    for row in rows:  # Text, not markup: a block named "[/x]" broke every `ls`
        grid.add_row(*(Text(visible(cell).replace("\n", "\\n")) for cell in row))
    with _writing_stdout():
        _out().print(grid)


def key_values(pairs: Sequence[tuple[str, str]]) -> None:
    out = _out()
    with _writing_stdout():
        for key, value in pairs:
            out.print(visible(f"{key}: {value}"), markup=False)


class ByteProgress:
    """A byte-count progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress = progress
        self._task = task

    def advance(self, amount: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, amount)

    def set_total(self, total: int) -> None:
        """Known only once the work began (a tree's size, once it is walked)."""
        if self._progress is not None:
            self._progress.update(self._task, total=total)


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


# -- log records: the engine's warnings, and the SDKs' only with --debug ------------------


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the moment (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


class _Lines(logging.Formatter):
    def __init__(self, fmt: str, tracebacks: bool) -> None:
        super().__init__(fmt)
        self._tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        record.level = record.levelname.lower()
        if not self._tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return visible(super().format(record))


def _ours(record: logging.LogRecord) -> bool:
    return record.name == "metanode" or record.name.startswith("metanode.")


_debug = False


def configure_logging(debug: bool | None = None, *, service: bool = False) -> None:
    """Send log records to stderr: this tool's warnings (and, for the service, its info
    lines with timestamps) always; the cloud SDKs' records, which carry long tracebacks
    for failures we already handle, only with ``--debug``. ``debug=None`` keeps what
    the root command set."""
    global _debug
    _debug = _debug if debug is None else debug
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CurrentStderr)]:
        root.removeHandler(old)
    fmt = (
        "%(asctime)s %(name)s %(level)s: %(message)s"
        if service
        else "metanode: %(level)s: %(message)s"
    )
    handler = _CurrentStderr()
    handler.setFormatter(_Lines(fmt, tracebacks=_debug))
    if not _debug:
        handler.addFilter(_ours)
    root.addHandler(handler)
    root.setLevel(logging.INFO if _debug or service else logging.WARNING)
    logging.getLogger("metanode").setLevel(logging.INFO if service else logging.WARNING)
