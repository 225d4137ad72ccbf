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
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

from metanode_storage.crypto.signing import NodeSigner, PublicKey, verify_ml_dsa, verify_signature

_DASH = "\u2014"
_ED25519 = b"\x01"
_ML_DSA_65 = b"\xffML-DSA-65"


class NoteInvalid(Exception):
    """The checkpoint text is malformed or its signature does not verify."""


def note_key_id(name: str, public_key: bytes, key_type: bytes = _ED25519) -> bytes:
    return sha256(name.encode() + b"\n" + key_type + public_key).digest()[:4]


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
        text = self.text().encode()
        lines = [note_key_id(self.origin, signer.public_key) + signer.sign(text)]
        pq_signature, pq_key = signer.sign_ml_dsa(text), signer.public.ml_dsa
        if pq_signature is not None and pq_key is not None:
            lines.append(note_key_id(self.origin, pq_key, _ML_DSA_65) + pq_signature)
        signed = "".join(
            f"{_DASH} {self.origin} {base64.b64encode(line).decode()}\n" for line in lines
        )
        return f"{text.decode()}\n{signed}"


def open_note(note: str, public_keys: Sequence[PublicKey]) -> Checkpoint:
    """Parse a signed checkpoint; it must carry valid signatures by one of ``public_keys``
    (both of a hybrid key's)."""
    try:
        text, signatures = note.split("\n\n", 1)
        text += "\n"
        origin, size_text, root_text = text.rstrip("\n").split("\n")
        checkpoint = Checkpoint(origin, int(size_text), base64.b64decode(root_text, validate=True))
    except (ValueError, binascii.Error):
        raise NoteInvalid("checkpoint text is malformed") from None
    blobs = []
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != origin:
            continue
        try:
            blobs.append(base64.b64decode(parts[2], validate=True))
        except binascii.Error:
            continue
    message = text.encode()
    for public in public_keys:
        ed_id = note_key_id(origin, public.ed25519)
        if not any(
            b[:4] == ed_id and verify_signature(public.ed25519, message, b[4:]) for b in blobs
        ):
            continue
        if public.ml_dsa is None:
            return checkpoint
        pq_id = note_key_id(origin, public.ml_dsa, _ML_DSA_65)
        if any(b[:4] == pq_id and verify_ml_dsa(public.ml_dsa, message, b[4:]) for b in blobs):
            return checkpoint
    raise NoteInvalid(f"checkpoint at size {checkpoint.size} has no valid signature")
