"""Erasure coding against full replicas, on the same data and the same five providers.

    python benchmarks/bench_erasure.py [--size-mib 256] [--small 2000] [--tree 5000] [--runs 3]

For ``replicas:3`` and ``ec:3+2`` on five local providers (fresh paths each run), stores
a file of alternating 1 MiB blocks of random bytes and of text (bench_peers.py's mixed
file), then reads it back, then stores ``--small`` 4 KiB objects in one batch, then stores
and restores a tree of ``--tree`` 4 KiB files in 20 directories; then one provider's
directory is removed and a repair pass rebuilds its share onto a spare. Prints one table:
stored bytes of the file against its compressed size (one sealed copy of each chunk, from
the map's totals), store and restore MiB/s, 4 KiB batch stores per second, tree files per
second, and the time to repair the lost provider's share. Medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench_peers import (
    make_mixed_file,
    make_tree,
)  # benchmarks/ is on sys.path when run as a script
from report_table import print_table

from metanode_storage import Node, Secret, init_node
from metanode_storage.config.settings import ProviderSettings, load_settings, save_settings
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.engine.repair import repair
from metanode_storage.redundancy import Redundancy

PASSPHRASE = Secret(b"benchmark passphrase")
SCHEMES = ("replicas:3", "ec:3+2")
MIB = 1024 * 1024


def one_run(
    base: Path, scheme: Redundancy, source: Path, small: int, tree: Path, tree_files: int
) -> dict[str, float]:
    providers = []
    for i in range(6):  # five in use, one spare for the repair
        (base / f"p{i}").mkdir(parents=True)
        providers.append(ProviderSettings(f"p{i}", "local", path=str(base / f"p{i}")))
    home = base / "node"
    init_node(
        home,
        PASSPHRASE,
        providers=providers[:5],
        redundancy=scheme,
        max_cloud_providers=5,
        kdf=KdfParams.fresh(1, 8 * 1024, 1),
    )
    figures: dict[str, float] = {}
    with Node.open(home, PASSPHRASE) as node:
        started = time.perf_counter()
        block = node.store_file(source)
        figures["store_s"] = time.perf_counter() - started
        started = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            node.retrieve(block.block_id, sink)
        figures["restore_s"] = time.perf_counter() - started
        stats = node.blockmap.stats()
        figures["stored"] = stats.stored_bytes
        figures["copy"] = stats.copy_bytes
        objects = [(f"o{i}", os.urandom(4096)) for i in range(small)]
        started = time.perf_counter()
        node.store_many(objects)
        figures["small_per_s"] = small / (time.perf_counter() - started)
        started = time.perf_counter()
        stored_tree, _ = node.store_tree([tree])
        figures["tree_store_per_s"] = tree_files / (time.perf_counter() - started)
        started = time.perf_counter()
        node.retrieve_tree(stored_tree.block_id, base / "restored")
        figures["tree_restore_per_s"] = tree_files / (time.perf_counter() - started)
    settings = load_settings(home / "config.toml")
    save_settings(home / "config.toml", replace(settings, providers=tuple(providers)))
    shutil.rmtree(base / "p0")  # a lost provider: its share must be rebuilt elsewhere
    (base / "p0").mkdir()  # it answers again, empty
    with Node.open(home, PASSPHRASE) as node:
        started = time.perf_counter()
        report = repair(node, limit=1_000_000)
        figures["repair_s"] = time.perf_counter() - started
        assert report.failed == 0 and report.lost == 0, report
        figures["repaired"] = report.repaired
        with open(os.devnull, "wb") as sink:
            node.retrieve(block.block_id, sink)  # still whole
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--tree", type=int, default=5000, help="4 KiB files in the tree")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {s: [] for s in SCHEMES}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        source = Path(tmp) / "mixed.bin"
        make_mixed_file(source, args.size_mib, seed=1)
        tree = Path(tmp) / "tree"
        make_tree(tree, args.tree, seed=2)
        for run in range(args.runs):
            for text in SCHEMES:  # interleaved: both schemes see the same machine state
                base = Path(tmp) / f"run{run}-{text.replace(':', '-').replace('+', '-')}"
                scheme = Redundancy.parse(text)
                results[text].append(one_run(base, scheme, source, args.small, tree, args.tree))
    size = args.size_mib * MIB
    rows = []
    for text in SCHEMES:

        def median(key: str, scheme: str = text) -> float:
            return statistics.median(r[key] for r in results[scheme])

        rows.append(
            (
                text,
                f"{median('stored') / MIB:,.0f} MiB",
                f"{median('stored') / median('copy'):.2f}x",
                f"{size / MIB / median('store_s'):,.0f} MiB/s",
                f"{size / MIB / median('restore_s'):,.0f} MiB/s",
                f"{median('small_per_s'):,.0f}/s",
                f"{median('tree_store_per_s'):,.0f} / {median('tree_restore_per_s'):,.0f}",
                f"{median('repair_s'):.2f} s ({median('repaired'):,.0f} chunks)",
            )
        )
    print(
        f"{args.size_mib} MiB mixed file, {args.small} x 4 KiB, a tree of {args.tree} x 4 KiB; "
        "five local providers; "
        f"medians of {args.runs}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores"
    )
    print_table(
        (
            "redundancy",
            "stored",
            "stored / compressed",
            "store",
            "restore",
            "4 KiB batch",
            "tree files/s store / restore",
            "repair one lost provider",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
