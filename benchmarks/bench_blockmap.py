"""Does storing one more block stay cheap as the map grows? Commit rate by map size.

    python benchmarks/bench_blockmap.py [--blocks 1000000] [--step 100000]

Each block is committed in its own transaction (as a store does), with one
new chunk of three replicas, sealed rows and synchronous=FULL.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from metanode_storage.blockmap import BlockMap, BlockRecord, ChunkRecord, Replica


def _records(n: int) -> tuple[BlockRecord, ChunkRecord]:
    chunk_id = os.urandom(32)
    chunk = ChunkRecord(
        chunk_id,
        4096,
        "k1",
        os.urandom(60),
        tuple(Replica(f"local-{i}", os.urandom(16).hex(), 4200) for i in (1, 2, 3)),
    )
    block = BlockRecord(
        f"block-{n:09d}",
        os.urandom(32).hex(),
        4096,
        int(time.time()),
        (chunk_id,),
        {"signature": os.urandom(64).hex()},
        os.urandom(64).hex(),
    )
    return block, chunk


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
            started = time.perf_counter()
            for _ in range(args.sample):
                block, chunk = _records(n)
                blockmap.commit_block(block, [chunk])
                n += 1
            rate = args.sample / (time.perf_counter() - started)
            started = time.perf_counter()
            for i in range(0, n, max(1, n // 1000)):
                blockmap.get_block(f"block-{i:09d}")
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
    for i in range(start, start + count):
        block, chunk = _records(i)
        blockmap.commit_block(block, [chunk])
    blockmap._db.execute("PRAGMA synchronous=FULL")


if __name__ == "__main__":
    main()
