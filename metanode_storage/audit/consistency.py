"""Checking that a newer checkpoint extends one an auditor kept, without the trail.

An auditor keeps a signed checkpoint (`audit checkpoint -o old.note`). Later the node
gives a newer checkpoint with an RFC 6962 consistency proof from the old size
(`audit checkpoint --since old.note -o new.json`); `audit verify --since old.note
--checkpoint new.json --public-key KEY` checks both signatures and the proof, and so
that nothing the auditor once saw was removed or changed, with no access to the
trail. The document::

    {"checkpoint": "<signed note>", "since": <old size>, "proof": ["<hex>", ...]}
"""

from __future__ import annotations

from dataclasses import dataclass

from metanode_storage.audit.merkle import verify_consistency
from metanode_storage.audit.note import Checkpoint, NoteInvalid, open_note
from metanode_storage.crypto.signing import PublicKey


@dataclass(frozen=True)
class Extension:
    old: Checkpoint | None
    new: Checkpoint | None
    problem: str  # "" when the new checkpoint extends the old one


def check_extension(
    old_note: str, new_note: str, proof: list[bytes], public_keys: list[PublicKey]
) -> Extension:
    try:
        old = open_note(old_note, public_keys)
    except NoteInvalid as exc:
        return Extension(None, None, f"the kept checkpoint: {exc}")
    try:
        new = open_note(new_note, public_keys)
    except NoteInvalid as exc:
        return Extension(old, None, f"the new checkpoint: {exc}")
    if new.origin != old.origin:
        return Extension(old, new, f"the checkpoints are of different trails ({old.origin})")
    if new.size < old.size:
        return Extension(
            old, new, f"the new checkpoint covers {new.size} events, fewer than {old.size}"
        )
    if not verify_consistency(old.size, new.size, proof, old.root, new.root):
        return Extension(
            old,
            new,
            f"the trail at {new.size} events does not extend the one at {old.size}: events "
            "the kept checkpoint covers were removed, changed or reordered",
        )
    return Extension(old, new, "")
