"""The seed's ContainerBlock and StorageLocation, as the engine reports them.

These are views built from the block map. They carry no key and no blob
name: ``distribution_map`` says which providers hold the block and how many
chunk replicas each has, and a ``verification_hash`` over those replicas,
but not where on the provider they are (that stays in the sealed map).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# What long operations report to: the number of bytes just processed.
Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    """A Progress for callers that show none."""


@dataclass(frozen=True)
class StorageLocation:
    location_id: str
    cloud_provider: str  # the vendor: aws, gcp, ..., local
    provider: str  # the configured provider's name
    region: str
    chunk_replicas: int
    stored_bytes: int
    verification_hash: str  # SHA-256 over this provider's replica keys and sizes
    backup_locations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ContainerBlock:
    block_id: str
    data_hash: str
    proof_hash: str
    size_bytes: int
    created_at: int
    distribution_map: list[StorageLocation]
    vm_signature: str
    proof: dict[str, Any]
    chunks: int
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """What a listing shows of it (`ls --json`, locally or through a service)."""
        return {
            "block_id": self.block_id,
            "name": self.name,
            "size_bytes": self.size_bytes,
            "created_at": self.created_at,
            "data_hash": self.data_hash,
            "chunks": self.chunks,
            "providers": [loc.provider for loc in self.distribution_map],
        }
