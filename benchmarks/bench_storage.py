"""Store and retrieve rates on the embedded default (three local providers).

    python benchmarks/bench_storage.py [--small N] [--large-mib M]

Prints a table: 4 KiB objects per second (one store or retrieve each, and one batch
through Node.store_many and Node.retrieve_many), and MB/s for one large file.
Numbers depend on the disk (every replica is fsynced) and on the two cores.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage import Node, Secret, init_node
from metanode_storage.crypto.kdf import KdfParams


def _row(name: str, count: int, seconds: float, unit: str, amount: float) -> tuple[str, ...]:
    return (name, f"{count:,}", f"{seconds:.2f}", f"{amount / seconds:,.1f} {unit}")


def _provider_blobs(home: Path) -> int:
    """Blobs on the local providers (each one PUT, fsynced): packs and map backups."""
    return sum(1 for path in (home / "providers").rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=2000, help="number of 4 KiB objects")
    parser.add_argument("--large-mib", type=int, default=256, help="size of the large file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        passphrase = Secret(b"benchmark passphrase")
        init_node(home, passphrase, kdf=KdfParams.fresh(1, 8 * 1024, 1))
        rows = []
        with Node.open(home, passphrase) as node:
            objects = [os.urandom(4096) for _ in range(args.small)]
            started = time.perf_counter()
            ids = [node.store_bytes(data).block_id for data in objects]
            rows.append(
                _row("store 4 KiB", len(ids), time.perf_counter() - started, "objects/s", len(ids))
            )
            threaded = [os.urandom(4096) for _ in range(args.small)]
            blobs_before = _provider_blobs(home)
            started = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:  # as the service stores concurrent uploads
                stored = list(pool.map(node.store_bytes, threaded))
            threaded_seconds = time.perf_counter() - started
            shared_packs = (_provider_blobs(home) - blobs_before) / len(stored)
            rows.append(
                _row(
                    "store 4 KiB, one store_bytes each from 8 threads (group commit)",
                    len(stored),
                    threaded_seconds,
                    "objects/s",
                    len(stored),
                )
            )
            fresh = [os.urandom(4096) for _ in range(args.small)]  # no dedup with the above
            started = time.perf_counter()
            batch = node.store_many((f"o{i}", data) for i, data in enumerate(fresh))
            rows.append(
                _row(
                    "store 4 KiB, one batch (store_many)",
                    len(batch),
                    time.perf_counter() - started,
                    "objects/s",
                    len(batch),
                )
            )
            started = time.perf_counter()
            for block_id in ids:
                node.retrieve_bytes(block_id)
            rows.append(
                _row(
                    "retrieve 4 KiB", len(ids), time.perf_counter() - started, "objects/s", len(ids)
                )
            )

            started = time.perf_counter()
            found = node.retrieve_many(b.block_id for b in batch)
            rows.append(
                _row(
                    "retrieve 4 KiB, one batch (retrieve_many)",
                    len(found),
                    time.perf_counter() - started,
                    "objects/s",
                    len(found),
                )
            )
            assert found == fresh

            size = args.large_mib * 1024 * 1024
            source = Path(tmp) / "large.bin"
            with open(source, "wb") as fh:
                for _ in range(args.large_mib):
                    fh.write(os.urandom(1024 * 1024))
            started = time.perf_counter()
            block = node.store_file(source)
            rows.append(
                _row(
                    f"store {args.large_mib} MiB file",
                    1,
                    time.perf_counter() - started,
                    "MB/s",
                    size / 1e6,
                )
            )
            sink = io.BytesIO()
            started = time.perf_counter()
            node.retrieve(block.block_id, sink)
            rows.append(
                _row(
                    f"retrieve {args.large_mib} MiB file",
                    1,
                    time.perf_counter() - started,
                    "MB/s",
                    size / 1e6,
                )
            )

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, replication factor 3 on local disk"
    )
    print_table(("operation", "count", "seconds", "rate"), rows)
    print(
        f"blobs uploaded per store by the 8 threads: {shared_packs:.2f} "
        "(3 replicas each; fewer than 3 when stores share pack uploads)"
    )


if __name__ == "__main__":
    main()
