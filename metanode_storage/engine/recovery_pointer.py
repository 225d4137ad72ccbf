"""Recovery pointers: where a provider holds the map backup, sealed to a recovery recipient.

Written by the backup log (engine/backup_log.py) once per provider and recipient, read by
`recover --identity` (engine/escrow.py).
"""

from __future__ import annotations

import json

from metanode_storage.crypto.xwing import XWingRecipient
from metanode_storage.engine.backup import Locator

_POINTER_SIZE = 512  # every pointer is padded to this: a provider sees one fixed size


def pointer_info(provider: str) -> bytes:
    return b"metanode recovery pointer v1\0" + provider.encode()


def pointer_name(recipient: XWingRecipient, provider: str) -> str:
    return recipient.blob_name(provider.encode())


def seal_pointer(recipient: XWingRecipient, node_id: str, provider: str, locator: Locator) -> bytes:
    body = json.dumps(
        {"v": 1, "node_id": node_id, "provider": provider, "locator": locator.to_hex()}
    ).encode()
    return recipient.seal(body.ljust(_POINTER_SIZE, b" "), pointer_info(provider))
