"""The write path of a node: chunk, seal and pack the data of one block or many, then
sign the blocks as one batch and commit them, all of them or none."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from hashlib import sha256
from typing import Any, BinaryIO, NamedTuple

from metanode_storage.audit.trail import OK, STORE
from metanode_storage.blockmap.records import BlockRecord, ChunkRecord
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.config.settings import NodeSettings
from metanode_storage.crypto.aead import keyed_hash
from metanode_storage.crypto.batch_proof import BlockFields, seal_batch_with_leaves
from metanode_storage.crypto.keystore import KeyMaterial
from metanode_storage.engine.auditing import NodeAudit
from metanode_storage.engine.batch_input import OFFSET, BatchObject
from metanode_storage.engine.chunker import Chunker
from metanode_storage.engine.group_commit import GroupCommit
from metanode_storage.engine.metrics import Metrics
from metanode_storage.engine.model import ContainerBlock, Progress
from metanode_storage.engine.proof import PROOF_TYPE, manifest_hash
from metanode_storage.engine.views import Holdings, container_view
from metanode_storage.engine.writer import ChunkWriter
from metanode_storage.errors import InputError

# Sealing a small chunk costs less than handing it to a worker thread.
_SEAL_INLINE_BELOW = 64 * 1024
_SMALL_CHUNKS_PER_LOOKUP = 256  # at most 16 MiB of small chunks held for one map lookup


def new_block_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs in their text form, from one read of the OS's
    random source: ``uuid.uuid4()`` reads it once per id, 3 us a block of a batch."""
    raw = bytearray(os.urandom(16 * count))
    ids = []
    for at in range(0, len(raw), 16):
        raw[at + 6] = (raw[at + 6] & 0x0F) | 0x40  # version 4
        raw[at + 8] = (raw[at + 8] & 0x3F) | 0x80  # the RFC 4122 variant
        h = raw[at : at + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


class StreamResult(NamedTuple):
    first_chunk: int  # index in the block's chunk ids
    chunks: int
    sha256: str
    size: int


@dataclass(frozen=True)
class NewBlock:
    """A block about to be signed: which of the written chunks it holds, and its fields."""

    first_chunk: int
    chunks: int
    data_hash: str
    size: int
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of_object(cls, placed: BatchObject) -> NewBlock:
        extra = {OFFSET: placed.offset} if placed.bundled else {}
        return cls(
            placed.first_chunk, placed.chunks, placed.sha256, placed.size, placed.name, extra
        )


@dataclass(frozen=True)
class _Commit:
    """A store's request to the group committer."""

    written: Written
    blocks: Sequence[NewBlock]
    started: float  # when the store began, for the metrics


@dataclass(frozen=True)
class Written:
    """Chunks written for a block that is not committed yet."""

    writer: ChunkWriter
    chunk_ids: list[bytes]
    streams: list[StreamResult]
    new_chunks: list[ChunkRecord]


class BlockStores:
    """The write path: every stream cut into chunks, each chunk the map lacks sealed
    into packs (engine/writer.py), then the blocks signed as one batch and committed
    in one transaction, together with those of other stores that reach the commit at
    the same time (engine/group_commit.py). Knows nothing of locks: the node holds
    the blocks lock around each store."""

    def __init__(
        self,
        blockmap: BlockMap,
        keys: KeyMaterial,
        settings: NodeSettings,
        new_writer: Callable[[], ChunkWriter],
        workers: Executor,
        chunks_in_flight: int,
        audit: NodeAudit,
        metrics: Metrics,
    ) -> None:
        self._blockmap = blockmap
        self._keys = keys
        self._settings = settings
        self._new_writer = new_writer
        self._workers = workers
        self._in_flight = chunks_in_flight
        self._audit = audit
        self._metrics = metrics
        self._group: GroupCommit[_Commit, list[ContainerBlock]] = GroupCommit(self._commit_group)

    def use_keys(self, keys: KeyMaterial) -> None:
        """After a key rotation: new blocks are signed with, and chunks keyed by, these."""
        self._keys = keys

    def put_chunks(
        self,
        streams: Iterable[BinaryIO | bytes],
        progress: Progress,
        finished: Callable[[StreamResult], None] = lambda _: None,
    ) -> Written:
        """Chunk every stream in turn and write each chunk the map lacks (all replicas
        durable before this returns); ``finished`` hears of each stream as it ends.
        ``bytes`` is one chunk as it is (a tree's bundle of small files), its result
        without a SHA-256. Nothing is in the map yet: see commit."""
        writer = self._new_writer()
        dedup_key = self._keys.dedup_key.reveal()
        chunker = Chunker(dedup_key)
        chunk_ids: list[bytes] = []
        results: list[StreamResult] = []
        pending: dict[bytes, Future[ChunkRecord]] = {}  # written on a worker
        in_flight: deque[Future[ChunkRecord]] = deque()
        # Small chunks wait here for one map lookup for many (a tree of small files would
        # otherwise ask the map once per file), then are sealed inline.
        small: dict[bytes, bytes] = {}
        sealed_inline: dict[bytes, ChunkRecord] = {}

        def write_small() -> None:
            present = self._blockmap.present_chunks(list(small))
            for chunk_id, data in small.items():
                if chunk_id not in present:
                    sealed_inline[chunk_id] = writer.write(chunk_id, data)
            small.clear()

        try:
            for stream in streams:
                whole, size, first = sha256(), 0, len(chunk_ids)
                one_chunk = isinstance(stream, bytes)  # cut already; no hash of it needed
                for data in self._read_chunks(chunker, stream):
                    if not one_chunk:
                        whole.update(data)
                    size += len(data)
                    chunk_id = keyed_hash(dedup_key, data)
                    chunk_ids.append(chunk_id)
                    if chunk_id in pending or chunk_id in small or chunk_id in sealed_inline:
                        pass
                    elif len(data) < _SEAL_INLINE_BELOW:
                        small[chunk_id] = data
                        if len(small) >= _SMALL_CHUNKS_PER_LOOKUP:
                            write_small()
                    elif not self._blockmap.has_chunk(chunk_id):
                        future = self._workers.submit(writer.write, chunk_id, data)
                        pending[chunk_id] = future
                        in_flight.append(future)
                        while len(in_flight) >= self._in_flight:
                            in_flight.popleft().result()
                    progress(len(data))
                digest = "" if one_chunk else whole.hexdigest()
                result = StreamResult(first, len(chunk_ids) - first, digest, size)
                results.append(result)
                finished(result)
            write_small()
            new_chunks = writer.finish(
                [*sealed_inline.values(), *(f.result() for f in pending.values())]
            )
        except BaseException:
            for future in pending.values():
                future.cancel()
            for future in pending.values():
                if not future.cancelled():
                    future.exception()  # wait: its replicas may still be joining packs
            writer.discard_all()
            raise
        return Written(writer, chunk_ids, results, new_chunks)

    def commit(
        self, written: Written, blocks: Sequence[NewBlock], started: float
    ) -> list[ContainerBlock]:
        """Sign ``blocks`` as one batch and commit their map rows in one transaction: only
        now do they exist, all of them or none. ``started``: when the store began, for
        the metrics. Stores that reach this point at the same time (the service's
        concurrent requests) are committed as one group (engine/group_commit.py)."""
        return self._group.commit(_Commit(written, blocks, started))

    def _commit_group(self, group: Sequence[_Commit]) -> list[list[ContainerBlock]]:
        chunk_ids: list[bytes] = []
        blocks: list[NewBlock] = []
        new_chunks: list[ChunkRecord] = []
        for item in group:  # one chunk list for the group: blocks index into it
            if chunk_ids:
                start = len(chunk_ids)
                blocks += [replace(b, first_chunk=b.first_chunk + start) for b in item.blocks]
            else:
                blocks += item.blocks
            chunk_ids += item.written.chunk_ids
            new_chunks += item.written.new_chunks
        signed = self._sign_blocks(chunk_ids, blocks)
        records = [record for record, _ in signed]
        # Each new chunk goes with the first block that names it. Two concurrent stores
        # that both wrote a chunk: one copy is committed, the other is dead bytes in a
        # pack, as are the copies of chunks another run committed meanwhile (referenced,
        # not added); gc repacks them.
        offered = {c.chunk_id: c for c in new_chunks}
        rows = []
        for record in records:
            named = dict.fromkeys(record.chunk_ids)
            rows.append((record, [offered.pop(c) for c in named if c in offered]))
        try:
            spare = {c.chunk_id for c in self._blockmap.commit_blocks(rows)}
        except BaseException:
            for item in group:
                item.written.writer.discard_all()
            raise
        known = {c.chunk_id: c for c in new_chunks if c.chunk_id not in spare}
        # chunks another block or run had committed: their rows, a few hundred per query
        referenced = {c for r in records for c in r.chunk_ids if c not in known}
        known.update(self._blockmap.get_chunks(list(referenced)))
        holdings: Holdings = {}
        views = [
            container_view(record, known.get, self._settings.providers, proof_hash, holdings)
            for record, proof_hash in signed
        ]
        self._audit.record_many(
            [
                (
                    STORE,
                    view.block_id,
                    OK,
                    {
                        "size": view.size_bytes,
                        "chunks": len(record.chunk_ids),
                        "new_chunks": len(added),
                        "providers": [loc.provider for loc in view.distribution_map],
                        **({"tree": True} if "tree" in record.extra else {}),
                    },
                )
                for view, (record, added) in zip(views, rows, strict=True)
            ]
        )
        now = time.perf_counter()
        self._metrics.add(
            store_ops=len(views),
            store_bytes=sum(v.size_bytes for v in views),
            store_seconds=sum(now - item.started for item in group),
        )
        per_item = []
        for item in group:
            per_item.append(views[: len(item.blocks)])
            views = views[len(item.blocks) :]
        return per_item

    @staticmethod
    def _read_chunks(chunker: Chunker, stream: BinaryIO | bytes) -> Iterator[bytes]:
        """The stream's chunks (a chunker per store: pyfastcdc's is not thread-safe);
        ``bytes`` is one chunk already."""
        if isinstance(stream, bytes):
            yield stream
            return
        try:
            yield from chunker.chunks(stream)
        except OSError as exc:
            raise InputError(f"cannot read the input: {exc.strerror or exc}") from None

    def _sign_blocks(
        self, chunk_ids: list[bytes], blocks: Sequence[NewBlock]
    ) -> list[tuple[BlockRecord, str]]:
        """One signature for the whole batch: a Merkle tree over the blocks' proof records,
        signed once, and each block's inclusion path (crypto/batch_proof.py). Each record
        comes with its proof hash."""
        signer = self._keys.signer
        started = time.perf_counter()
        created_at = int(time.time())
        ids = new_block_ids(len(blocks))
        own_chunks = [chunk_ids[b.first_chunk : b.first_chunk + b.chunks] for b in blocks]
        proofs, leaves = seal_batch_with_leaves(
            signer,
            [
                BlockFields(
                    PROOF_TYPE, block_id, b.data_hash, b.size, created_at, manifest_hash(c).hex()
                )
                for block_id, b, c in zip(ids, blocks, own_chunks, strict=True)
            ],
        )
        self._metrics.add(proofs=len(proofs), proof_seconds=time.perf_counter() - started)
        return [
            (
                BlockRecord(
                    block_id=proof.block_id,
                    data_hash=b.data_hash,
                    size=b.size,
                    created_at=created_at,
                    chunk_ids=tuple(c),
                    proof=proof,
                    vm_signature=proof.seal.signature_hex,  # the batch seal's: see PROOFS.md
                    name=b.name,
                    encrypted=self._settings.encryption,
                    extra=b.extra,
                ),
                leaf.hex(),
            )
            for proof, leaf, b, c in zip(proofs, leaves, blocks, own_chunks, strict=True)
        ]
