"""Proof and audit-trail rates, next to the seed's claims.

    python benchmarks/bench_proofs_audit.py [--proofs N] [--events N]

Prints proofs generated and verified per second (one Ed25519 signature each,
PyNaCl), audit events appended per second (signed, hash-linked, one SQLite
transaction each, fsync on commit), and full-trail verification in events/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from hashlib import sha256
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

from metanode_storage.audit.trail import AuditTrail
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.proof import make_proof, manifest_hash


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000)
    args = parser.parse_args()
    signer = NodeSigner.generate()
    trusted = {signer.key_id: signer.public_key}
    manifest = manifest_hash([os.urandom(32)])
    hashes = [sha256(os.urandom(16)).hexdigest() for _ in range(args.proofs)]

    started = time.perf_counter()
    proofs = [make_proof(signer, f"b{i}", h, 4096, 1, manifest) for i, h in enumerate(hashes)]
    generate = time.perf_counter() - started
    started = time.perf_counter()
    assert all(p.verify(trusted) for p in proofs)
    verify = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        trail = AuditTrail(Path(tmp) / "audit.sqlite", "metanode/bench", signer)
        started = time.perf_counter()
        for i in range(args.events):
            trail.append("store", f"block-{i}", detail={"size": 4096})
        append = time.perf_counter() - started
        trail.checkpoint()
        started = time.perf_counter()
        report = trail.verify(trusted)
        full = time.perf_counter() - started
        assert report.ok and report.events == args.events
        trail.close()

    rows = [
        ("proof generation", f"{args.proofs:,}", _rate(args.proofs, generate), "100,000/s"),
        ("proof verification", f"{args.proofs:,}", _rate(args.proofs, verify), "200,000/s"),
        ("audit append (durable)", f"{args.events:,}", _rate(args.events, append), "-"),
        ("audit full-trail verify", f"{args.events:,}", _rate(args.events, full), "-"),
    ]
    print_table(("operation", "count", "measured", "seed claims"), rows)


if __name__ == "__main__":
    main()
