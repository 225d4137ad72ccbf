"""The VM-only block map: where every replica of every block is, sealed at rest."""

from metanode_storage.blockmap.records import BlockRecord, ChunkRecord, Replica
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.blockmap.totals import MapStats

__all__ = ["BlockMap", "BlockRecord", "ChunkRecord", "MapStats", "Replica"]
