"""Building the seed's ContainerBlock view of a stored block from the map."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import sha256

from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.engine.model import ContainerBlock, StorageLocation
from metanode_storage.engine.proof import block_proof


@dataclass(frozen=True)
class _Held:
    """What one provider holds of a list of chunks, whichever block names them."""

    provider: str
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
        held = _holdings(block.chunk_ids, chunk)
        if holdings is not None:
            holdings[block.chunk_ids] = held
    configured = {p.name: p for p in providers}

    def location_id(provider: str) -> str:
        return sha256(f"{block.block_id}\0{provider}".encode()).hexdigest()[:16]

    locations = []
    for each in held:
        settings = configured.get(each.provider)
        locations.append(
            StorageLocation(
                location_id=location_id(each.provider),
                cloud_provider=settings.vendor if settings else "unknown",
                provider=each.provider,
                region=settings.region if settings else "",
                chunk_replicas=each.chunk_replicas,
                stored_bytes=each.stored_bytes,
                verification_hash=each.verification_hash,
                backup_locations=sorted({location_id(p) for p in each.backup_providers}),
            )
        )
    return ContainerBlock(
        block_id=block.block_id,
        data_hash=block.data_hash,
        proof_hash=proof_hash or block_proof(block).proof_hash,
        size_bytes=block.size,
        created_at=block.created_at,
        distribution_map=locations,
        vm_signature=block.vm_signature,
        proof=block.proof_document,
        chunks=len(block.chunk_ids),
        name=block.name,
    )


def _holdings(
    chunk_ids: Sequence[bytes], chunk: Callable[[bytes], ChunkRecord | None]
) -> list[_Held]:
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
        held.append(
            _Held(
                provider,
                len(replicas),
                sum(size for _, size in replicas),
                digest.hexdigest(),
                tuple(sorted(backups - {provider})),
            )
        )
    return held
