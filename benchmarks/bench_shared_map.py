"""Store commits per second with the map in PostgreSQL (1, 2 and 4 hosts at once) against
one node with its map in SQLite; the latency of a map lookup on each, and the rate of a
batch read of every block (`retrieve_many`).

    python benchmarks/bench_shared_map.py [--stores 300] [--lookups 2000]

Each "host" is a process with a home of its own, storing 4 KiB objects one store
(one map commit, one audit event) at a time into three local providers that every
home shares; map backups stay on (the default), so each host's run ends with one.
PostgreSQL runs on 127.0.0.1 from Debian's package, fsync on, in a temporary
directory (tests/pgserver.py). Figures go in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metanode_storage import Node, Secret, init_node  # noqa: E402
from metanode_storage.config.settings import ProviderSettings  # noqa: E402
from metanode_storage.engine.setup import join_node  # noqa: E402
from tests.conftest import PASSPHRASE, cheap_kdf  # noqa: E402
from tests.pgserver import PostgresServer  # noqa: E402

SECRET = Secret(PASSPHRASE.encode())


def _node(base: Path, hosts: int, map_url: str) -> list[Path]:
    providers = []
    for i in range(3):
        (base / f"disk{i}").mkdir(parents=True)
        providers.append(ProviderSettings(f"local-{i}", "local", path=str(base / f"disk{i}")))
    homes = [base / f"host{i}" for i in range(hosts)]
    init_node(homes[0], SECRET, providers=providers, kdf=cheap_kdf(), map_url=map_url)
    for home in homes[1:]:
        join_node(home, map_url, SECRET)
    return homes


def _commit_rate(homes: list[Path], stores: int) -> float:
    """Stores per second, all hosts together, from the first start to the last finish."""
    started = time.perf_counter()
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.shared_host", str(home), str(stores), str(seed)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for seed, home in enumerate(homes, start=1)
    ]
    for run in runs:
        _, err = run.communicate()
        if run.returncode != 0:
            raise SystemExit(err.decode()[-2000:])
    return stores * len(homes) / (time.perf_counter() - started)


def _reads(home: Path, lookups: int) -> tuple[float, float]:
    """Median microseconds to find one block's record (a retrieve's first step), and
    blocks per second read back verified in one `retrieve_many` batch."""
    with Node.open(home, SECRET) as node:
        ids = [b.block_id for b in node.blocks()]
        samples = []
        for i in range(lookups):
            started = time.perf_counter()
            node.blockmap.get_block(ids[i % len(ids)])
            samples.append(time.perf_counter() - started)
        started = time.perf_counter()
        node.retrieve_many(ids)
        batch = len(ids) / (time.perf_counter() - started)
    return statistics.median(samples) * 1e6, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stores", type=int, default=300, help="stores per host")
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        server = PostgresServer(base / "pg")
        server.start()
        try:
            sqlite_homes = _node(base / "sqlite", 1, "")
            rate = _commit_rate(sqlite_homes, args.stores)
            rows.append(("SQLite, 1 host", rate, *_reads(sqlite_homes[0], args.lookups)))
            for hosts in (1, 2, 4):
                homes = _node(base / f"pg{hosts}", hosts, server.new_database())
                rate = _commit_rate(homes, args.stores)
                rows.append((f"PostgreSQL, {hosts} host(s)", rate, *_reads(homes[0], args.lookups)))
        finally:
            server.remove()
    base_rate = rows[0][1]
    print(f"{'map':<24} {'stores/s':>9} {'vs SQLite':>10} {'lookup us':>10} {'batch reads/s':>14}")
    for name, rate, lookup, batch in rows:
        print(f"{name:<24} {rate:>9.0f} {rate / base_rate:>9.2f}x {lookup:>10.0f} {batch:>14.0f}")
    print(f"({args.stores} stores of 4 KiB per host, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
