"""The root `metanode` app, and the one place where errors become exit codes."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import traceback
from types import MethodType
from typing import Annotated, Any

import typer
import typer.core

from metanode_storage import __version__
from metanode_storage.cli import (
    audit_cmd,
    blocks_cmd,
    console,
    distributed_cmd,
    keys_cmd,
    lock_cmd,
    proof_cmd,
    providers_cmd,
    recovery_cmd,
    remote,
    repair_cmd,
    service_cmd,
    session_cmd,
)
from metanode_storage.errors import ExitCode, MetanodeError

app = typer.Typer(
    rich_markup_mode=None,
    name="metanode",
    help="metanode: encrypted, replicated storage across several object stores.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    add_completion=True,
)
storage_app = typer.Typer(
    rich_markup_mode=None,
    help="Store, retrieve and verify data.",
    no_args_is_help=True,
    callback=remote.configure,
)
app.add_typer(storage_app, name="storage")
distributed_cmd.app.command("start")(service_cmd.start)
storage_app.add_typer(distributed_cmd.app, name="distributed")
storage_app.add_typer(providers_cmd.app, name="providers")
storage_app.add_typer(audit_cmd.app, name="audit")
storage_app.add_typer(proof_cmd.app, name="proof")
storage_app.add_typer(keys_cmd.app, name="keys")
storage_app.add_typer(session_cmd.app, name="session")
storage_app.add_typer(lock_cmd.app, name="lock")
storage_app.add_typer(service_cmd.token_app, name="token")
blocks_cmd.register(storage_app)
storage_app.command("repair")(repair_cmd.repair_command)
storage_app.command("backup-map")(recovery_cmd.backup_map)
storage_app.command("recover")(recovery_cmd.recover)


def _version(value: bool) -> None:
    if value:
        console.line(f"metanode-storage {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", envvar="METANODE_DEBUG", help="Show tracebacks.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """Root options."""


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("METANODE_DEBUG", "") not in ("", "0", "false")


def _tune_malloc() -> None:
    """Keep chunk-sized buffers in two malloc arenas, for reuse rather than page faults.

    glibc gives busy threads arenas of their own (up to 8 per core), and each keeps the
    chunk-sized buffers (up to 4 MiB) freed into it resident: a 1 GiB put peaked
    anywhere from 227 to 308 MiB. Two arenas (one per core here) reuse freed buffers
    instead. Serving every allocation of 1 MiB and up from mmap (an earlier fix) kept
    memory flat too, but paid an mmap, page faults and an munmap per buffer.

    With two arenas alone, glibc still hands the free top of an arena back to the kernel
    (madvise) once it passes a threshold that its own mmap heuristic keeps near the size
    of one buffer, and the next buffer faults those pages in again: a 1 GiB restore took
    200,000-270,000 page faults and 1.1-1.4 s of system time. Fixed thresholds (buffers
    up to 16 MiB from the arenas, 32 MiB of free top kept) cut that to 35,000 and
    0.65-0.75 s, with the same peak memory. A no-op where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 16 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 32 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


def _usage_pieces(self: Any, ctx: Any) -> list[str]:
    """Arguments in usage lines as Click writes them (FILE, [BLOCK_ID]), where Typer
    writes {file}: braces read as a literal to type, or as a shell brace expansion."""
    pieces = [self.options_metavar] if self.options_metavar else []
    for param in self.get_params(ctx):
        if isinstance(param, typer.core.TyperArgument):
            name = (param.metavar or param.name or "").upper()
            name += "..." if param.nargs != 1 else ""
            pieces.append(name if param.required else f"[{name}]")
    return pieces


def _classic_usage(command: Any) -> None:
    command.collect_usage_pieces = MethodType(_usage_pieces, command)
    if isinstance(command, typer.core.TyperGroup):
        for sub in command.commands.values():
            _classic_usage(sub)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt is: the same clean-up runs."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _stopped_by(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that ``exc`` was raised while handling, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _stopped(stop: KeyboardInterrupt) -> int:
    if isinstance(stop, _Terminated):
        console.fatal("terminated")
        return int(ExitCode.TERMINATED)
    console.fatal("interrupted")
    return int(ExitCode.INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script exits with it)."""
    # `timeout`, cron and systemd stop a run with SIGTERM: it would die where it stood,
    # leaving temporary pack files and its lease behind, where Ctrl-C removes them
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)  # only the main thread may set a signal handler
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    _tune_malloc()
    args = list(sys.argv[1:] if argv is None else argv)
    console.guard_standard_streams()
    console.configure_logging(_debug_requested(args))
    command = typer.main.get_command(app)
    _classic_usage(command)
    try:
        # Standalone mode: Typer handles usage errors (exit 2), --help and typer.Exit
        # and ends with SystemExit; our own errors come through as exceptions.
        command.main(args=args, prog_name="metanode", standalone_mode=True)
    except SystemExit as exc:
        # Typer turns KeyboardInterrupt into a silent exit 130
        stop = _stopped_by(exc) if exc.code == ExitCode.INTERRUPTED else None
        if stop is not None:
            return _stopped(stop)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt as exc:
        return _stopped(exc)
    except MetanodeError as exc:
        if _debug_requested(args):
            traceback.print_exc()
        console.error(exc)
        return int(exc.exit_code)
    except Exception as exc:  # a bug: one line, unless --debug
        if _debug_requested(args):
            traceback.print_exc()
        console.fatal(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)"
        )
        return int(ExitCode.INTERNAL)
    return 0


def run() -> None:
    sys.exit(main())
