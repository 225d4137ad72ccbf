"""Checkpoints in the C2SP signed-note format (https://c2sp.org/signed-note, tlog-checkpoint).

A checkpoint is the text::

    <origin>\\n<tree size>\\n<base64 root hash>\\n

followed by a blank line and one signature line::

    — <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\\n

The key id is the first 4 bytes of SHA-256(key name || 0x0A || 0x01 || public key),
0x01 being signed-note's identifier for Ed25519. The signature covers the text.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from hashlib import sha256

from metanode_storage.crypto.signing import NodeSigner, verify_signature

_DASH = "\u2014"
_ED25519 = b"\x01"


class NoteInvalid(Exception):
    """The checkpoint text is malformed or its signature does not verify."""


def note_key_id(name: str, public_key: bytes) -> bytes:
    return sha256(name.encode() + b"\n" + _ED25519 + public_key).digest()[:4]


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse_unverified(cls, note: str) -> Checkpoint:
        """The checkpoint a note states, signature not checked: for notes this node wrote
        and keeps locally (open_note is for anything that came from elsewhere)."""
        try:
            origin, size_text, root_text = note.split("\n\n", 1)[0].split("\n")
            return cls(origin, int(size_text), base64.b64decode(root_text, validate=True))
        except (ValueError, binascii.Error):
            raise NoteInvalid("checkpoint text is malformed") from None

    def sign(self, signer: NodeSigner) -> str:
        text = self.text()
        signature = signer.sign(text.encode())
        blob = base64.b64encode(note_key_id(self.origin, signer.public_key) + signature)
        return f"{text}\n{_DASH} {self.origin} {blob.decode()}\n"


def open_note(note: str, public_keys: list[bytes]) -> Checkpoint:
    """Parse a signed checkpoint; it must carry a valid signature by one of ``public_keys``."""
    try:
        text, signatures = note.split("\n\n", 1)
        text += "\n"
        origin, size_text, root_text = text.rstrip("\n").split("\n")
        checkpoint = Checkpoint(origin, int(size_text), base64.b64decode(root_text, validate=True))
    except (ValueError, binascii.Error):
        raise NoteInvalid("checkpoint text is malformed") from None
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != origin:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        for public_key in public_keys:
            if blob[:4] == note_key_id(origin, public_key) and verify_signature(
                public_key, text.encode(), blob[4:]
            ):
                return checkpoint
    raise NoteInvalid(f"checkpoint at size {checkpoint.size} has no valid signature")
