"""Secret values and where the passphrase comes from.

A ``Secret`` never shows its value in ``repr``/``str``, so that a traceback,
a log line or a debugger print cannot leak it by accident.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from metanode_storage.errors import PassphraseUnavailable

PASSPHRASE_ENV = "METANODE_PASSPHRASE"
PASSPHRASE_FILE_ENV = "METANODE_PASSPHRASE_FILE"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


PromptFn = Callable[[str, bool], str]
PASSCOMMAND_ENV = "METANODE_PASSCOMMAND"
_PASSCOMMAND_TIMEOUT = 120.0  # a secret manager may ask for a touch or a PIN


def _from_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise PassphraseUnavailable(
            f"cannot read the passphrase file named by {PASSPHRASE_FILE_ENV}: {reason}",
            "check the path and its permissions",
        ) from None


def _from_command(command: str) -> str:
    """Run the command (no shell) and take its standard output, as borg's BORG_PASSCOMMAND
    and restic's --password-command do. Its output is never shown, even on failure."""
    try:
        argv = shlex.split(command)
        done = subprocess.run(
            argv,
            stdout=subprocess.PIPE,
            stderr=None,  # a secret manager's own messages reach the user
            timeout=_PASSCOMMAND_TIMEOUT,
            check=False,
        )
    except (ValueError, OSError, subprocess.TimeoutExpired, IndexError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise PassphraseUnavailable(
            f"the command in {PASSCOMMAND_ENV} could not be run: {why}",
            "check the command; it is split like a shell line but run without a shell",
        ) from None
    if done.returncode != 0:
        raise PassphraseUnavailable(
            f"the command in {PASSCOMMAND_ENV} failed with exit code {done.returncode}"
        )
    try:
        return done.stdout.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise PassphraseUnavailable(
            f"the command in {PASSCOMMAND_ENV} printed something that is not UTF-8 text"
        ) from None


def passphrase_from_environment(prompt: PromptFn | None = None, *, confirm: bool = False) -> Secret:
    """Find the passphrase: exactly one of ``METANODE_PASSPHRASE``,
    ``METANODE_PASSPHRASE_FILE`` and ``METANODE_PASSCOMMAND``, else an interactive
    prompt when one is available. Two sources at once are refused: silently preferring
    one would unlock (or create) a node with a passphrase the operator did not mean."""
    sources = {
        name: os.environ[name]
        for name in (PASSPHRASE_ENV, PASSPHRASE_FILE_ENV, PASSCOMMAND_ENV)
        if os.environ.get(name)
    }
    if len(sources) > 1:
        raise PassphraseUnavailable(
            f"the passphrase is given twice: {' and '.join(sources)} are both set",
            "unset all but one",
        )
    text = ""
    if PASSPHRASE_ENV in sources:
        text = sources[PASSPHRASE_ENV]
    elif PASSPHRASE_FILE_ENV in sources:
        text = _from_file(sources[PASSPHRASE_FILE_ENV])
    elif PASSCOMMAND_ENV in sources:
        text = _from_command(sources[PASSCOMMAND_ENV])
    elif prompt is not None and sys.stdin is not None and sys.stdin.isatty():
        text = prompt("Passphrase", confirm)
    if text:
        return Secret(text.encode())
    if sources:
        raise PassphraseUnavailable(f"{next(iter(sources))} gives an empty passphrase")
    raise PassphraseUnavailable(
        "no passphrase given",
        f"set {PASSPHRASE_ENV}, {PASSPHRASE_FILE_ENV} or {PASSCOMMAND_ENV}, "
        "run in a terminal to be prompted, or start a session "
        "(`metanode storage session start`; one that expired asks again)",
    )
