"""What one command uploads and costs as the map grows: incremental map backups.

    python benchmarks/bench_map_backup.py [--blocks 10000,100000]

For each map size: a node on four local providers (replication factor 3) is filled with that many
blocks (rows written straight into the sealed map, as stores would leave them),
its first backup (the snapshot) is taken, and then, measured:

- one store of 4 KiB: seconds for the whole command (open, store, close with
  its backup segment and checkpoint) and the bytes written to the providers
  beyond the chunk replicas (the map backup's share);
- one retrieve: the same figures (a read uploads only the audit checkpoint);
- store and retrieve again with one provider's directory gone (known Offline);
- the snapshot's size on one provider: what versions before 0.2 uploaded to
  every provider after every command, reads included.

Bytes are counted from the provider directories (files written or rewritten
during the command). Prints one table.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage import Node, Secret, init_node
from metanode_storage.blockmap.records import BlockRecord, ChunkRecord, Replica
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.crypto.kdf import KdfParams

PASSPHRASE = Secret(b"benchmark passphrase")


def _fill(node: Node, blocks: int) -> None:
    """Add ``blocks`` one-chunk blocks with three replicas each, sealed as real rows are."""
    template = node.store_bytes(os.urandom(4096))  # a real block, to copy its shape
    record = node.blockmap.get_block(template.block_id)
    chunk = node.blockmap.get_chunk(record.chunk_ids[0])
    assert chunk is not None
    batch: list[tuple[BlockRecord, list[ChunkRecord]]] = []
    for i in range(blocks - 1):
        chunk_id = os.urandom(32)
        replicas = tuple(Replica(r.provider, os.urandom(24).hex(), r.size) for r in chunk.replicas)
        batch.append(
            (
                BlockRecord(
                    block_id=f"{i:08x}-0000-4000-8000-{os.urandom(6).hex()}",
                    data_hash=os.urandom(32).hex(),
                    size=4096,
                    created_at=record.created_at,
                    chunk_ids=(chunk_id,),
                    proof=record.proof,
                    vm_signature=record.vm_signature,
                    name="",
                    encrypted=True,
                ),
                [
                    ChunkRecord(
                        chunk_id, 4096, chunk.data_key_id, chunk.wrapped_key, replicas, chunk.wanted
                    )
                ],
            )
        )
        if len(batch) == 5000 or i == blocks - 2:
            node.blockmap.commit_blocks(batch)
            batch = []
    node.changed = False  # the snapshot is taken, and timed, by the caller


def _provider_files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in (root / "providers").rglob("*")
        if p.is_file()
    }


def _measure(home: Path, work: str, block_id: str) -> tuple[float, int]:
    before = _provider_files(home)
    started = time.perf_counter()
    with Node.open(home, PASSPHRASE) as node:
        if work == "store":
            node.store_bytes(os.urandom(4096))
        else:
            node.retrieve(block_id, io.BytesIO())
    seconds = time.perf_counter() - started
    after = _provider_files(home)
    written = sum(
        size
        for name, (size, mtime) in after.items()
        if before.get(name) != (size, mtime) and len(Path(name).name) == 32  # not chunks
    )
    return seconds, written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", default="1000,10000,100000", help="map sizes, comma-separated")
    args = parser.parse_args()
    rows = []
    for blocks in (int(b) for b in args.blocks.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "node"
            disks = [
                ProviderSettings(f"local-{i}", "local", str(home / "providers" / f"local-{i}"))
                for i in (1, 2, 3, 4)
            ]
            for disk in disks:
                Path(disk.path).mkdir(parents=True)
            init_node(home, PASSPHRASE, providers=disks, kdf=KdfParams.fresh(1, 8 * 1024, 1))
            with Node.open(home, PASSPHRASE) as node:
                _fill(node, blocks)
                block_id = next(node.blocks()).block_id
            with Node.open(home, PASSPHRASE) as node:  # the first backup: a snapshot
                started = time.perf_counter()
                node.backup_map()
                snapshot_seconds = time.perf_counter() - started
                log = next(iter(node.backup_log_state().logs.values()))
                snapshot_bytes = log.snapshot_bytes
            store_s, store_bytes = _measure(home, "store", block_id)
            get_s, get_bytes = _measure(home, "retrieve", block_id)
            # one provider down (its directory unmounted), once the node knows it
            down = home / "providers" / "local-1"
            down.rename(down.with_name("unplugged"))
            _measure(home, "store", block_id)  # learns local-1 is Offline
            down_store_s, _ = _measure(home, "store", block_id)
            down_get_s, _ = _measure(home, "retrieve", block_id)
            rows.append(
                (
                    f"{blocks:,}",
                    f"{snapshot_bytes / 1e6:,.1f} MB in {snapshot_seconds:.2f} s",
                    f"{store_s * 1000:,.0f} ms",
                    f"{store_bytes / 1e3:,.1f} kB",
                    f"{get_s * 1000:,.0f} ms",
                    f"{get_bytes / 1e3:,.1f} kB",
                    f"{down_store_s * 1000:,.0f} / {down_get_s * 1000:,.0f} ms",
                )
            )
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print_table(
        (
            "blocks",
            "snapshot (per provider)",
            "store 4 KiB",
            "uploaded (4 providers)",
            "retrieve",
            "uploaded (4 providers)",
            "store / retrieve, 1 of 4 down",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
