"""Does storing one more block stay cheap as the map grows? Commit rate by map size.

    python benchmarks/bench_blockmap.py [--blocks 200000] [--step 50000] [--sample 2000]

Each timed block is committed in its own transaction, as a single store commits it: one
new chunk of three replicas, a batched proof of its own (one Ed25519 and one ML-DSA-65
signature, as a node's hybrid key makes), sealed rows, synchronous=FULL. Between samples
the map is filled, without fsync, with blocks signed 1,000 to a batch, as ``store_many``
and trees sign them. Rows are what a store writes (version 2, blockmap/block_rows.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica
from metanode_storage.crypto.batch_proof import BlockFields, seal_batch
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.proof import PROOF_TYPE, manifest_hash

_SIGNER = NodeSigner.generate(hybrid=True)


def _block_id(n: int) -> str:
    return str(uuid.UUID(int=n))  # block ids are UUIDs; the map looks only such text up


def _signed(first: int, count: int) -> list[tuple[BlockRecord, ChunkRecord]]:
    """``count`` blocks of one 4 KiB chunk each, signed as one batch."""
    now = int(time.time())
    chunks = [
        ChunkRecord(
            os.urandom(32),
            4096,
            "k1",
            os.urandom(60),
            tuple(Replica(f"local-{i}", os.urandom(16).hex(), 4200) for i in (1, 2, 3)),
        )
        for _ in range(count)
    ]
    fields = [
        BlockFields(
            PROOF_TYPE,
            _block_id(first + i),
            os.urandom(32).hex(),
            4096,
            now,
            manifest_hash([chunk.chunk_id]).hex(),
        )
        for i, chunk in enumerate(chunks)
    ]
    return [
        (
            BlockRecord(
                proof.block_id,
                proof.data_hash,
                proof.size,
                now,
                (chunk.chunk_id,),
                proof,
                proof.seal.signature_hex,
            ),
            chunk,
        )
        for proof, chunk in zip(seal_batch(_SIGNER, fields), chunks, strict=True)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=200_000)
    parser.add_argument("--step", type=int, default=50_000)
    parser.add_argument("--sample", type=int, default=2_000, help="commits timed per step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "map.sqlite"
        blockmap = BlockMap(path, os.urandom(32), create=True)
        print("map size   commits/s  lookup+open us  file MiB")
        n = 0
        while True:
            singles = [_signed(n + i, 1)[0] for i in range(args.sample)]  # signed untimed
            started = time.perf_counter()
            for block, chunk in singles:
                blockmap.commit_block(block, [chunk])
            n += args.sample
            rate = args.sample / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, n, max(1, n // 1000)):
                blockmap.get_block(_block_id(i))
            lookups = len(range(0, n, max(1, n // 1000)))
            lookup_us = (time.perf_counter() - started) / lookups * 1e6
            size = (path.stat().st_size + Path(f"{path}-wal").stat().st_size) / 2**20
            print(f"{n:>9,}  {rate:>9,.0f}  {lookup_us:>14.1f}  {size:>8.1f}")
            # Fill the rest of the step quickly: only the timed sample above needs
            # durable commits, so the filler turns fsync off on the map's connection.
            if n >= args.blocks:
                break
            fill = min(args.step - args.sample, args.blocks - n)
            _bulk_fill(blockmap, n, fill)
            n += fill
        blockmap.close()


def _bulk_fill(blockmap: BlockMap, start: int, count: int) -> None:
    blockmap._db.execute("PRAGMA synchronous=OFF")
    for first in range(start, start + count, 1000):
        batch = _signed(first, min(1000, start + count - first))
        blockmap.commit_blocks([(block, [chunk]) for block, chunk in batch])
    blockmap._db.execute("PRAGMA synchronous=FULL")


if __name__ == "__main__":
    main()
