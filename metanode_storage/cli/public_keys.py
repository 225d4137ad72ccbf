"""Reading node public keys given on the command line: the text `keys show` prints, or a
file holding it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from metanode_storage.errors import InvalidSetting

if TYPE_CHECKING:
    from metanode_storage.crypto.signing import PublicKey


PublicKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--public-key",
        help="Node public key as `keys show` prints it (Ed25519 hex, or ED25519:ML-DSA-65 hex "
        "for a hybrid key), or a file holding it (repeatable).",
    ),
]


def parse_public_keys(values: list[str] | None) -> dict[str, PublicKey]:
    from metanode_storage.crypto.signing import PublicKey

    keys: dict[str, PublicKey] = {}
    for value in values or []:
        text = value.strip()
        path = Path(text)
        if len(text) < 256 and path.is_file():
            words = path.read_text().split()
            text = words[0] if words else ""
        try:
            key = PublicKey.parse(text)
        except ValueError:
            raise InvalidSetting(
                f"{value[:80]!r} is not a node public key",
                "give 64 hex digits (Ed25519) or ED25519:ML-DSA-65 hex, as `keys show` prints",
            ) from None
        keys[key.key_id] = key
    return keys
