"""Secret values and where the passphrase comes from.

A ``Secret`` never shows its value in ``repr``/``str``, so that a traceback,
a log line or a debugger print cannot leak it by accident.
"""

from __future__ import annotations

import os
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


def passphrase_from_environment(prompt: PromptFn | None = None, *, confirm: bool = False) -> Secret:
    """Find the passphrase: ``METANODE_PASSPHRASE``, then ``METANODE_PASSPHRASE_FILE``,
    then an interactive prompt when one is available."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return Secret(value.encode())
    path = os.environ.get(PASSPHRASE_FILE_ENV)
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise PassphraseUnavailable(
                f"cannot read the passphrase file named by {PASSPHRASE_FILE_ENV}: {exc.strerror}",
                "check the path and its permissions",
            ) from None
        if text:
            return Secret(text.encode())
    if prompt is not None and sys.stdin is not None and sys.stdin.isatty():
        text = prompt("Passphrase", confirm)
        if text:
            return Secret(text.encode())
    raise PassphraseUnavailable(
        "no passphrase given",
        f"set {PASSPHRASE_ENV} or {PASSPHRASE_FILE_ENV}, or run in a terminal to be prompted",
    )
