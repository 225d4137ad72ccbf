"""What a provider can see: opaque names, sealed bodies, nothing that links or names."""

from __future__ import annotations

import re
from pathlib import Path

from metanode_storage import Node
from metanode_storage.crypto.xwing import XWingIdentity
from metanode_storage.engine.escrow import escrow_to
from metanode_storage.engine.recovery_pointer import pointer_name
from tests.conftest import provider_dirs

MARKER = b"TOP-SECRET-QUARTERLY-NUMBERS "


def test_providers_hold_only_opaque_sealed_blobs(node: Node, home: Path, tmp_path: Path) -> None:
    source = tmp_path / "board-minutes-2026.txt"
    source.write_bytes(MARKER * 200_000)  # compressible, several chunks after compression
    block = node.store_file(source)
    small = node.store_bytes(MARKER, name="note.txt")
    recipient = XWingIdentity.generate().recipient
    escrow_to(node, recipient.text())  # recovery pointers join the map backups
    pointers = {pointer_name(recipient, name) for name in node.providers}
    seen_names: set[str] = set()
    seen_bodies: set[bytes] = set()
    packs = 0
    identifiers = [
        block.block_id,
        small.block_id,
        block.data_hash,
        small.data_hash,
        "board-minutes",
        "note.txt",
        node.settings.node_id,
    ]
    for provider in provider_dirs(home):
        for path in provider.rglob("*"):
            if path.is_dir():
                assert re.fullmatch(r"[0-9a-f]{2}", path.name), path
                continue
            name = path.name
            # chunk blobs: 128 random bits and a 64-bit ownership tag; checkpoint and
            # map backup: 128-bit keyed names
            assert re.fullmatch(r"[0-9a-f]{32}|[0-9a-f]{48}", name), name
            assert name[:2] == path.parent.name
            body = path.read_bytes()
            assert MARKER not in body and MARKER[:8] not in body
            for identifier in identifiers:
                assert identifier.encode() not in body and identifier not in name
            assert name not in seen_names  # no name shared across providers
            assert body[1:] not in seen_bodies  # replicas share no ciphertext
            seen_names.add(name)
            seen_bodies.add(body[1:])
            if name in pointers:  # sealed to the recipient, one fixed size everywhere
                pointers.remove(name)
                assert len(body) == 512 + 1120 + 16
            if len(name) == 48:  # a pack of chunks: padded, so a tiny file shows no size
                packs += 1
                assert len(body) >= 4096
    # one pack per provider per store, however many chunks each holds: no blob per chunk
    assert block.chunks > 1 and packs == 3 * 2
    assert not pointers  # every provider holds its pointer
