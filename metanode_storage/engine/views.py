"""Building the seed's ContainerBlock view of a stored block from the map."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from hashlib import sha256

from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.engine.model import ContainerBlock, StorageLocation
from metanode_storage.engine.proof import block_proof


@dataclass(frozen=True)
class _Held:
    """What one provider holds of a list of chunks, whichever block names them."""

    provider: str
    vendor: str
    region: str
    chunk_replicas: int
    stored_bytes: int
    verification_hash: str
    backup_providers: tuple[str, ...]  # where its chunks have extra copies from repairs


# The providers' holdings of a chunk list, by the list: a batch's small blocks share one
# bundle, so their views differ only in the block id.
Holdings = dict[tuple[bytes, ...], list[_Held]]


def container_view(
    block: BlockRecord,
    chunk: Callable[[bytes], ChunkRecord | None],
    providers: Sequence[ProviderSettings],
    proof_hash: str | None = None,
    holdings: Holdings | None = None,
) -> ContainerBlock:
    """One StorageLocation per provider holding any of the block's chunks; replica names
    stay out, summarised by a verification hash over (name, size) pairs. ``proof_hash``:
    the block's, when the caller has it at hand (a store that just signed it);
    ``holdings``: kept from view to view by a caller making many."""
    held = None if holdings is None else holdings.get(block.chunk_ids)
    if held is None:
        held = _holdings(block.chunk_ids, chunk, providers)
        if holdings is not None:
            holdings[block.chunk_ids] = held
    block_id = block.block_id

    def location_id(provider: str) -> str:
        return sha256(f"{block_id}\0{provider}".encode()).hexdigest()[:16]

    return ContainerBlock(
        block_id=block_id,
        data_hash=block.data_hash,
        proof_hash=proof_hash or block_proof(block).proof_hash,
        size_bytes=block.size,
        created_at=block.created_at,
        distribution_map=[
            StorageLocation(
                location_id=location_id(each.provider),
                cloud_provider=each.vendor,
                provider=each.provider,
                region=each.region,
                chunk_replicas=each.chunk_replicas,
                stored_bytes=each.stored_bytes,
                verification_hash=each.verification_hash,
                backup_locations=sorted(map(location_id, each.backup_providers)),
            )
            for each in held
        ],
        vm_signature=block.vm_signature,
        proof=block.proof_document,
        chunks=len(block.chunk_ids),
        name=block.name,
    )


def _holdings(
    chunk_ids: Sequence[bytes],
    chunk: Callable[[bytes], ChunkRecord | None],
    providers: Sequence[ProviderSettings],
) -> list[_Held]:
    configured = {p.name: p for p in providers}
    by_provider: dict[str, list[tuple[str, int]]] = {}
    backups: set[str] = set()
    for chunk_id in dict.fromkeys(chunk_ids):
        record = chunk(chunk_id)
        for replica in record.replicas if record else ():
            by_provider.setdefault(replica.provider, []).append((replica.key, replica.size))
        backups.update(backup.provider for backup in (record.backups if record else ()))
    held = []
    for provider, replicas in sorted(by_provider.items()):
        digest = sha256()
        for key, size in sorted(replicas):
            digest.update(f"{key}:{size}\n".encode())
        settings = configured.get(provider)
        held.append(
            _Held(
                provider,
                settings.vendor if settings else "unknown",
                settings.region if settings else "",
                len(replicas),
                sum(size for _, size in replicas),
                digest.hexdigest(),
                tuple(sorted(backups - {provider})),
            )
        )
    return held


_CHUNKS_KEPT = 10_000  # chunk rows a listing keeps from one block's view to the next


class BlockViews:
    """The views of stored blocks that `ls`, `describe` and a retrieve return, read from
    the map."""

    def __init__(self, blockmap: BlockMap, providers: Sequence[ProviderSettings]) -> None:
        self._blockmap = blockmap
        self._providers = providers

    def every(self) -> Iterator[ContainerBlock]:
        """Every block's view, oldest first. Blocks stored together sit together and share
        chunks (a batch's bundle), so chunk rows and holdings are kept from one view to
        the next, a bounded number of them, instead of read and summed per block."""
        known: dict[bytes, ChunkRecord] = {}
        holdings: Holdings = {}
        for block in self._blockmap.blocks():
            if len(known) > _CHUNKS_KEPT:
                known.clear()
                holdings.clear()
            yield self.of(block, known, holdings)

    def of(
        self,
        block: BlockRecord,
        known: dict[bytes, ChunkRecord] | None = None,
        holdings: Holdings | None = None,
    ) -> ContainerBlock:
        """The block's view; ``known`` (chunk rows) and ``holdings`` are kept and added to
        by a caller making many views, as ``every``."""
        known = {} if known is None else known
        # a few hundred chunk rows per query: a tree's view names every file's chunk
        missing = [c for c in dict.fromkeys(block.chunk_ids) if c not in known]
        if missing:
            known.update(self._blockmap.get_chunks(missing))
        return container_view(block, known.get, self._providers, holdings=holdings)
