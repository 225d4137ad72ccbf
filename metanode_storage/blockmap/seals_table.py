"""The block map's ``seals`` table: what many block rows share, kept once and counted.

Two kinds of part live there, each named by a keyed hash of what it belongs to: a batch
seal that version 2 block rows name by its signature (blockmap/block_rows.py), and the
ML-DSA halves of hybrid proofs, a seal's signature and a key's public half
(blockmap/seal_parts.py). A part is written with the first block row that uses it and
deleted with the last; a part never changes, so parts read once are kept in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from metanode_storage.blockmap import block_rows, seal_parts
from metanode_storage.crypto import aead
from metanode_storage.crypto.batch_proof import BatchSeal
from metanode_storage.database import Database, drop_unused
from metanode_storage.errors import BlockMapDamaged

Seal = Callable[[str, bytes, bytes], bytes]  # (table, row id, plaintext) -> sealed row
_KEPT = 256  # parts, part ids and parsed seals held in memory, each


class SealsTable:
    def __init__(self, db: Database, map_key: bytes, seal: Seal, unseal: Seal) -> None:
        self._db = db
        self._key = map_key
        self._seal = seal
        self._unseal = unseal
        self._hex: dict[bytes, str] = {}  # parts read lately, in hex as proofs carry them
        self._ids: dict[bytes, bytes] = {}  # part row ids, by label
        self._batch_seals: dict[bytes, BatchSeal] = {}  # parsed, by their signature

    def part_id(self, label: bytes) -> bytes:
        """The row id of a part (a keyed hash: a batch's blocks share their label)."""
        part_id = self._ids.get(label)
        if part_id is None:
            if len(self._ids) >= _KEPT:
                self._ids.clear()
            part_id = self._ids[label] = aead.keyed_hash(self._key, b"seal-part", label)
        return part_id

    def hex_values(self, labels: Mapping[str, bytes]) -> dict[str, str]:
        """Each part of ``labels`` (name -> label) in hex, by name; those not read lately
        in one query (one round trip). A part the table lacks is map damage: a proof
        without it must never pass for a weaker one."""
        ids = {name: self.part_id(label) for name, label in labels.items()}
        if len(self._hex) >= _KEPT:
            self._hex.clear()
        missing = [i for i in dict.fromkeys(ids.values()) if i not in self._hex]
        if missing:
            marks = ",".join("?" * len(missing))
            rows = self._db.execute(
                f"SELECT part_id, sealed FROM seals WHERE part_id IN ({marks})", missing
            ).fetchall()
            for part_id, sealed in rows:
                self._hex[bytes(part_id)] = self._unseal("seals", bytes(part_id), sealed).hex()
        if any(i not in self._hex for i in ids.values()):
            raise BlockMapDamaged(
                "a block's proof names a seal part the map does not hold",
                "the map was damaged; restore it from a map backup",
            )
        return {name: self._hex[part_id] for name, part_id in ids.items()}

    def batch_seal(self, signature: bytes) -> BatchSeal:
        """The batch seal a version 2 row names, parsed once and kept."""
        seal = self._batch_seals.get(signature)
        if seal is None:
            label = block_rows.seal_label(signature)
            body = bytes.fromhex(self.hex_values({"seal": label})["seal"])
            try:
                seal = block_rows.decode_seal(body, self._ml_dsa_key)
                if seal.signature != signature:
                    raise ValueError("it is another seal than its name says")
            except (ValueError, UnicodeDecodeError) as exc:
                raise BlockMapDamaged(
                    f"a batch seal of the block map is malformed: {exc}",
                    "the map was damaged; restore it from a map backup",
                ) from None
            if len(self._batch_seals) >= _KEPT:
                self._batch_seals.clear()
            self._batch_seals[signature] = seal
        return seal

    def _ml_dsa_key(self, key_id: str) -> bytes:
        return bytes.fromhex(self.hex_values({"key": seal_parts.key_label(key_id)})["key"])

    def count(self, db: Database, parts: Iterable[Sequence[seal_parts.Part]], delta: int) -> None:
        """Add ``delta`` references to each of ``parts`` (the parts each block row uses),
        inside the caller's transaction ``db``: a part is written with its first
        reference and removed with its last."""
        counts: dict[bytes, tuple[seal_parts.Part, int]] = {}
        for block_parts in parts:
            for part in block_parts:
                part_id = self.part_id(part.label)
                counts[part_id] = (part, counts.get(part_id, (part, 0))[1] + delta)
        db.executemany(
            "INSERT INTO seals VALUES (?, ?, ?) "
            "ON CONFLICT(part_id) DO UPDATE SET refcount = seals.refcount + excluded.refcount",
            [
                (part_id, change, self._seal("seals", part_id, part.value))
                for part_id, (part, change) in counts.items()
            ],
        )
        drop_unused(db, "seals", "part_id", "refcount", list(counts))
