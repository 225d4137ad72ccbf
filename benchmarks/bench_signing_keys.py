"""What the signing key's kind costs a node: Ed25519 alone against Ed25519 + ML-DSA-65.

    python benchmarks/bench_signing_keys.py [--batch N] [--single N]

For each kind, a fresh node on three local providers stores N x 4 KiB objects through
``store_many`` (one batch seal), then M single ``store_bytes`` (one seal each), and
reports the times and the block map's size after a VACUUM. The Ed25519-only node is made
by replacing the keystore's signing key, as a node from before TLSLS has it.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage import Node, Secret, init_node
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.crypto.keystore import SigningKeyRecord, update_keystore
from metanode_storage.crypto.signing import NodeSigner


def _make_ed25519_only(home: Path, passphrase: Secret) -> None:
    only = SigningKeyRecord.of(NodeSigner.generate(hybrid=False), 1)
    update_keystore(
        home / "keystore.mnk",
        passphrase,
        lambda material: material.signing_keys.__setitem__(slice(None), [only]),
    )


def _measure(home: Path, passphrase: Secret, batch: int, single: int) -> tuple[float, float]:
    with Node.open(home, passphrase) as node:
        objects = [(f"o{i}", os.urandom(4096)) for i in range(batch)]
        started = time.perf_counter()
        node.store_many(objects)
        many = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(single):
            node.store_bytes(os.urandom(4096))
        one = (time.perf_counter() - started) / max(single, 1)
    return many, one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1_000, help="objects in one store_many")
    parser.add_argument("--single", type=int, default=200, help="single stores after it")
    args = parser.parse_args()
    passphrase = Secret(b"benchmark passphrase")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hybrid in (False, True):
            home = Path(tmp) / ("hybrid" if hybrid else "ed25519")
            init_node(home, passphrase, kdf=KdfParams.fresh(1, 8 * 1024, 1))
            if not hybrid:
                _make_ed25519_only(home, passphrase)
            many, one = _measure(home, passphrase, args.batch, args.single)
            db = sqlite3.connect(home / "blockmap.sqlite")
            db.execute("VACUUM")
            db.close()
            size = (home / "blockmap.sqlite").stat().st_size
            rows.append(
                (
                    "Ed25519 + ML-DSA-65" if hybrid else "Ed25519 only",
                    f"{many:.2f} s",
                    f"{one * 1000:.2f} ms",
                    f"{size / 2**20:.1f} MiB",
                )
            )
    blocks = args.batch + args.single
    print_table(
        (
            "signing key",
            f"store_many of {args.batch:,}",
            "one store_bytes",
            f"map for {blocks:,} blocks",
        ),
        rows,
    )


if __name__ == "__main__":
    main()
