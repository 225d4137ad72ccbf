"""Reading Ed25519 public keys given on the command line: hex, or a file holding hex."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.crypto.signing import key_id_of
from metanode_storage.errors import InvalidSetting

PublicKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="Node public key: 64 hex digits, or a file holding them (repeatable).",
    ),
]


def parse_public_keys(values: list[str] | None) -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for value in values or []:
        text = value.strip()
        path = Path(text)
        if path.is_file():
            text = path.read_text().split()[0] if path.read_text().split() else ""
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise InvalidSetting(f"{value!r} is not an Ed25519 public key (64 hex digits)")
        keys[key_id_of(raw)] = raw
    return keys
