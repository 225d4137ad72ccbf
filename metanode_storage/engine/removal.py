"""Removing a block: the map forgets it first, then the blobs only it needed go.

A crash in between leaves orphans for `gc`, never a listed block without its data. A
pack that still holds other chunks stays; `gc` rewrites it once less than
``repack_below`` of it is in use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from metanode_storage.blockmap.records import Replica
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.errors import ProviderError
from metanode_storage.providers.base import BlobStore


def remove_block(blockmap: BlockMap, providers: Mapping[str, BlobStore], block_id: str) -> int:
    """Delete the block (a whole id) and the blobs no other block needs; return how many
    blobs were deleted. A blob that cannot be deleted now is left for `gc`."""
    released = blockmap.delete_block(block_id)
    own_blobs = [c for chunk in released.chunks for c in chunk.all_copies if not c.in_pack]
    return delete_quietly(providers, own_blobs + released.empty_packs)


def delete_quietly(providers: Mapping[str, BlobStore], copies: Iterable[Replica]) -> int:
    """Delete the blobs of ``copies`` the map no longer names; return how many went. Best
    effort: one that cannot be deleted now (or whose provider is not configured) is an
    orphan for `gc`."""
    deleted = 0
    for copy in copies:
        store = providers.get(copy.provider)
        if store is None:
            continue
        try:
            store.delete(copy.key)
            deleted += 1
        except ProviderError:
            pass
    return deleted
