"""The ML-DSA half of hybrid proofs, kept once per batch seal instead of once per block.

A hybrid proof (crypto/batch_proof.py) carries its batch seal's ML-DSA-65
signature (3,309 bytes) and verification key (1,952 bytes). Every block of a
batch shares both, and every batch a key signs shares the key, so writing
them into each block row made the map about five times larger (10.5 KiB of
hex per block). The map keeps each part once, in its own table, and a block
row keeps its proof without them plus a mark saying where they went; reading
the row puts them back, so nothing above the map sees the difference.

A part is named by what it belongs to (the seal's Ed25519 signature, or the
key id) and counted by the blocks that use it, so removing the last such block
removes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STASHED = "ml_dsa_stashed"  # in a stored proof: its ML-DSA fields live in the seals table
# proof field -> what names its part: the same value for every block that shares it
_PART_OWNER = {"ml_dsa_signature": "signature", "ml_dsa_verification_key": "key_id"}


@dataclass(frozen=True)
class Part:
    field: str  # which proof field it fills in a JSON row ("" for a v2 row's parts)
    label: bytes  # what it belongs to: a seal signature or a key id, with its kind
    hex_value: str  # as the proof carries it; decoded only when the part is written

    @property
    def value(self) -> bytes:
        return bytes.fromhex(self.hex_value)


def split(proof: Mapping[str, Any]) -> tuple[dict[str, Any], list[Part]]:
    """(the proof as a block row keeps it, the parts kept apart). A proof without an
    ML-DSA half is kept whole."""
    if not all(name in proof for name in _PART_OWNER):
        return dict(proof), []
    kept: dict[str, Any] = {k: v for k, v in proof.items() if k not in _PART_OWNER}
    kept[STASHED] = True
    return kept, [Part(name, *_label_and_value(proof, name)) for name in _PART_OWNER]


def labels(stored: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """(field, label) of each part a stored proof left out; none for a whole proof."""
    if not stored.get(STASHED):
        return []
    return [(name, _label(stored, name)) for name in _PART_OWNER]


def join(stored: Mapping[str, Any], hex_values: Mapping[str, str]) -> dict[str, Any]:
    """The proof as it was signed: the stored one with its parts (by field, in hex) put
    back. A batch's blocks can share the one string of each part."""
    proof = {k: v for k, v in stored.items() if k != STASHED}
    proof.update(hex_values)
    return proof


def key_label(key_id: str) -> bytes:
    """What names a hybrid key's ML-DSA half: the key id."""
    return b"key_id\0" + key_id.encode()


def _label(proof: Mapping[str, Any], name: str) -> bytes:
    owner = _PART_OWNER[name]
    return owner.encode() + b"\0" + str(proof[owner]).encode()


def _label_and_value(proof: Mapping[str, Any], name: str) -> tuple[bytes, str]:
    return _label(proof, name), str(proof[name])
