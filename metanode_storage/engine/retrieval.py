"""Reading blocks back: no byte reaches the caller before it is verified.

``BlockReads`` checks a block's signed proof against the node's trusted keys, fetches
its chunks (a few ahead, or pack by pack for a batch of small blocks), checks the
whole-object SHA-256 and notes every bad replica it met in the map for repair. It
takes no lock, writes no audit event (it drafts them) and counts nothing: ``Node`` does
those around it.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future
from hashlib import sha256
from types import MappingProxyType
from typing import BinaryIO

from metanode_storage.audit.trail import FAILED, OK, RETRIEVE, VIOLATION, NewEvent
from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.crypto.batch_proof import ProofVerifier
from metanode_storage.crypto.signing import PublicKey
from metanode_storage.engine import tree
from metanode_storage.engine.batch_input import OFFSET
from metanode_storage.engine.model import Progress
from metanode_storage.engine.reader import ChunkReader, ReplicaCheck
from metanode_storage.engine.tree_restore import TreeRestore
from metanode_storage.engine.verification import check_block_signatures
from metanode_storage.errors import InputError, IntegrityError, MetanodeError
from metanode_storage.fileio import write_out

ReadChunk = tuple[bytes, list[ReplicaCheck]]  # a chunk's verified plaintext, what was found
NOTHING_READ: Mapping[bytes, ReadChunk] = MappingProxyType({})


class BlockReads:
    def __init__(
        self,
        blockmap: BlockMap,
        reader: ChunkReader,
        workers: Executor,
        chunks_in_flight: int,
        trusted_keys: Mapping[str, PublicKey],
    ) -> None:
        self._blockmap = blockmap
        self._reader = reader
        self._workers = workers
        self._in_flight = chunks_in_flight
        self.trust(trusted_keys)

    def trust(self, trusted_keys: Mapping[str, PublicKey]) -> None:
        """Check proofs against these keys from now on (after a key rotation)."""
        self.trusted_keys = trusted_keys
        self.verifier = ProofVerifier(trusted_keys)  # batch seals checked this run

    def check_signatures(self, block: BlockRecord) -> None:
        check_block_signatures(block, self.trusted_keys, self.verifier)

    # -- one block ----------------------------------------------------------------

    def stream_audited(
        self,
        block: BlockRecord,
        sink: BinaryIO,
        events: list[NewEvent],
        progress: Progress,
        read_ahead: Mapping[bytes, ReadChunk] = NOTHING_READ,
    ) -> int:
        """Stream one verified file block to ``sink`` and add its audit event to ``events``
        (on failure too); 1 if a chunk needed a failover, else 0."""
        if "tree" in block.extra:
            raise InputError(
                f"block {block.block_id} is a directory tree",
                "restore it with -o DIR, or one file with --path",
            )
        faults: list[list[str]] = []
        try:
            failovers = self._stream(block, sink, progress, faults, read_ahead)
        except IntegrityError as exc:
            detail = {"faults": faults, "error": exc.message}
            events.append((RETRIEVE, block.block_id, VIOLATION, detail))
            raise
        except MetanodeError as exc:
            detail = {"faults": faults, "error": str(exc)}
            events.append((RETRIEVE, block.block_id, FAILED, detail))
            raise
        events.append((RETRIEVE, block.block_id, VIOLATION if faults else OK, {"faults": faults}))
        return 1 if failovers else 0

    def _stream(
        self,
        block: BlockRecord,
        sink: BinaryIO,
        progress: Progress,
        faults: list[list[str]],
        read_ahead: Mapping[bytes, ReadChunk],
    ) -> int:
        """Stream the verified block to ``sink``; return how many chunks needed a failover.
        ``read_ahead`` holds chunks already read and verified (``read_packed``)."""
        self.check_signatures(block)
        whole = sha256()
        failovers = 0
        for chunk_id, data, checks in self._fetch_in_order(block, read_ahead):
            self.record_checks(chunk_id, checks)
            # a replica failed and another one served the chunk: a multi-cloud failover
            failovers += len(checks) > 1
            faults.extend([c.provider, c.state] for c in checks if c.is_fault)
            whole.update(data)
            write_out(sink, data)
            progress(len(data))
        if not hmac.compare_digest(whole.hexdigest(), block.data_hash):
            raise IntegrityError(
                f"block {block.block_id}: the SHA-256 of the retrieved data does not match",
                "run `metanode storage verify` on it",
            )
        return failovers

    def _fetch_in_order(
        self, block: BlockRecord, read_ahead: Mapping[bytes, ReadChunk]
    ) -> Iterator[tuple[bytes, bytes, list[ReplicaCheck]]]:
        """(chunk id, plaintext, replica checks) in order, fetched a few chunks ahead."""
        if len(block.chunk_ids) == 1:  # a worker thread costs more than a small read
            (chunk_id,) = block.chunk_ids
            data, checks = read_ahead.get(chunk_id) or self._reader.read(
                self.chunk_record(block, chunk_id), caller_hashes=True
            )
            yield chunk_id, own_bytes(block, data), checks
            return
        ahead: deque[tuple[bytes, Future[ReadChunk]]] = deque()
        try:
            for chunk_id in block.chunk_ids:
                record = self.chunk_record(block, chunk_id)
                read = self._workers.submit(self._reader.read, record, caller_hashes=True)
                ahead.append((chunk_id, read))
                if len(ahead) >= self._in_flight:
                    done_id, future = ahead.popleft()
                    yield (done_id, *future.result())
            while ahead:
                done_id, future = ahead.popleft()
                yield (done_id, *future.result())
        finally:
            for _, pending in ahead:
                pending.cancel()

    # -- many small blocks ----------------------------------------------------------

    def read_packed(self, blocks: Sequence[BlockRecord]) -> dict[bytes, ReadChunk]:
        """The chunks of the one-chunk file blocks among ``blocks``, read pack by pack (a
        few range requests a pack instead of one a block), each verified as
        ``ChunkReader.read`` verifies it. A group that fails is left out: its blocks are
        read one by one, so each fails in its turn, with its own audit event."""
        singles = (b for b in blocks if len(b.chunk_ids) == 1 and "tree" not in b.extra)
        wanted = list(dict.fromkeys(b.chunk_ids[0] for b in singles))
        records = list(self._blockmap.get_chunks(wanted).values())
        return self._reader.read_many(records, caller_hashes=True)  # each block's SHA-256

    # -- trees ----------------------------------------------------------------------

    def manifest(self, block: BlockRecord) -> list[tree.Entry]:
        """A tree block's entries, checked against its signed data hash."""
        count = int(block.extra.get("tree", {}).get("manifest_chunks", -1))
        if count < 0:
            raise InputError(f"block {block.block_id} is a file, not a directory tree")
        self.check_signatures(block)
        raw = b"".join(self.chunk_data(block, block.chunk_ids[len(block.chunk_ids) - count :]))
        if not hmac.compare_digest(sha256(raw).hexdigest(), block.data_hash):
            raise IntegrityError(f"block {block.block_id}: the tree's manifest does not match")
        return tree.parse_manifest(raw)

    def tree_restore(self, io_pool: Executor) -> TreeRestore:
        return TreeRestore(
            self._reader,
            io_pool,
            chunk_data=self.chunk_data,
            chunk_records=self.chunk_records,
            record_checks=self.record_checks,
        )

    # -- chunks -----------------------------------------------------------------------

    def chunk_record(self, block: BlockRecord, chunk_id: bytes) -> ChunkRecord:
        record = self._blockmap.get_chunk(chunk_id)
        if record is None:
            raise IntegrityError(
                f"block {block.block_id} names chunk {chunk_id.hex()[:12]}, "
                "which the map does not hold",
                "restore a map backup",
            )
        return record

    def chunk_records(self, block: BlockRecord, chunk_ids: Sequence[bytes]) -> list[ChunkRecord]:
        """The records of ``chunk_ids``, a few hundred per query."""
        known = self._blockmap.get_chunks(list(chunk_ids))
        return [known.get(c) or self.chunk_record(block, c) for c in chunk_ids]

    def chunk_data(self, block: BlockRecord, chunk_ids: Sequence[bytes]) -> Iterator[bytes]:
        """The chunks' plaintexts, in order, for a caller that checks their SHA-256 (a
        tree's manifest, one of its files) before it uses them."""
        for chunk_id in chunk_ids:
            record = self.chunk_record(block, chunk_id)
            data, checks = self._reader.read(record, caller_hashes=True)
            self.record_checks(chunk_id, checks)
            yield data

    def record_checks(self, chunk_id: bytes, checks: list[ReplicaCheck]) -> None:
        """Note each bad replica in the map: status shows it, repair rewrites it."""
        for check in checks:
            if check.is_fault:
                self._blockmap.record_fault(chunk_id, check.provider, check.state)


def own_bytes(block: BlockRecord, chunk: bytes) -> bytes:
    """The block's bytes in its one chunk: all of it, or its part of a bundle."""
    if OFFSET not in block.extra:
        return chunk
    offset = block.extra[OFFSET]
    if type(offset) is not int or not 0 <= offset <= len(chunk) - block.size:
        raise IntegrityError(
            f"block {block.block_id}: its place in its bundle lies outside the bundle",
            "the map was damaged; restore it from a map backup",
        )
    return chunk[offset : offset + block.size]
