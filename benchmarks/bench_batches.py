"""In-process batches of small objects: Node.store_many and Node.retrieve_many.

    python benchmarks/bench_batches.py [--objects N] [--singles S] [--runs R]

Each run makes a fresh node on three local providers (rf=3), stores and reads back S
objects one at a time (so the batch meets a map, an audit trail and a heap that are not
empty), then stores N fresh 4 KiB objects in one batch and retrieves them in one batch.
Prints a row per run: objects per second (wall clock) and the process's CPU time per
object, worker threads included. The CPU figure moves less with this machine's noise
than the rate does; compare commits by alternating them in one sitting.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage import Node, Secret, init_node
from metanode_storage.crypto.kdf import KdfParams


def one_run(objects: int, singles: int) -> tuple[str, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        passphrase = Secret(b"benchmark passphrase")
        init_node(home, passphrase, kdf=KdfParams.fresh(1, 8 * 1024, 1))
        with Node.open(home, passphrase) as node:
            for _ in range(singles):
                node.retrieve_bytes(node.store_bytes(os.urandom(4096)).block_id)
            data = [(f"object-{i}", os.urandom(4096)) for i in range(objects)]
            wall, cpu = time.perf_counter(), time.process_time()
            stored = node.store_many(data)
            store_wall, store_cpu = time.perf_counter() - wall, time.process_time() - cpu
            wall, cpu = time.perf_counter(), time.process_time()
            found = node.retrieve_many([b.block_id for b in stored])
            read_wall, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
            if found != [d for _, d in data]:
                raise SystemExit("retrieve_many gave back other bytes")
    return (
        f"{objects / store_wall:,.0f}/s",
        f"{store_cpu / objects * 1e6:.0f} us",
        f"{objects / read_wall:,.0f}/s",
        f"{read_cpu / objects * 1e6:.0f} us",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=5000, help="4 KiB objects in the batch")
    parser.add_argument("--singles", type=int, default=2000, help="single stores first")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = [(str(run), *one_run(args.objects, args.singles)) for run in range(1, args.runs + 1)]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.objects:,} objects of 4 KiB a batch, rf=3"
    )
    print_table(("run", "store_many", "CPU per store", "retrieve_many", "CPU per retrieve"), rows)


if __name__ == "__main__":
    main()
