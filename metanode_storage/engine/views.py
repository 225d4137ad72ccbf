"""Building the seed's ContainerBlock view of a stored block from the map."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from hashlib import sha256

from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.engine.model import ContainerBlock, StorageLocation
from metanode_storage.engine.proof import load_proof


def container_view(
    block: BlockRecord,
    chunk: Callable[[bytes], ChunkRecord | None],
    providers: Sequence[ProviderSettings],
    proof_hash: str | None = None,
) -> ContainerBlock:
    """One StorageLocation per provider holding any of the block's chunks; replica names
    stay out, summarised by a verification hash over (name, size) pairs. ``proof_hash``:
    the block's, when the caller has it at hand (a store that just signed it)."""
    by_provider: dict[str, list[tuple[str, int]]] = {}
    backups: dict[str, list[str]] = {}
    for chunk_id in dict.fromkeys(block.chunk_ids):
        record = chunk(chunk_id)
        for replica in record.replicas if record else ():
            by_provider.setdefault(replica.provider, []).append((replica.key, replica.size))
        for backup in record.backups if record else ():
            backups.setdefault(backup.provider, []).append(backup.key)
    configured = {p.name: p for p in providers}

    def location_id(provider: str) -> str:
        return sha256(f"{block.block_id}\0{provider}".encode()).hexdigest()[:16]

    locations = []
    for provider, replicas in sorted(by_provider.items()):
        digest = sha256()
        for key, size in sorted(replicas):
            digest.update(f"{key}:{size}\n".encode())
        settings = configured.get(provider)
        locations.append(
            StorageLocation(
                location_id=location_id(provider),
                cloud_provider=settings.vendor if settings else "unknown",
                provider=provider,
                region=settings.region if settings else "",
                chunk_replicas=len(replicas),
                stored_bytes=sum(size for _, size in replicas),
                verification_hash=digest.hexdigest(),
                # where this provider's chunks have extra copies left from repairs
                backup_locations=sorted({location_id(p) for p in backups if p != provider}),
            )
        )
    return ContainerBlock(
        block_id=block.block_id,
        data_hash=block.data_hash,
        proof_hash=proof_hash or load_proof(block.proof).proof_hash,
        size_bytes=block.size,
        created_at=block.created_at,
        distribution_map=locations,
        vm_signature=block.vm_signature,
        proof=block.proof,
        chunks=len(block.chunk_ids),
        name=block.name,
    )
