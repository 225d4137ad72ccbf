"""Proof and audit-trail rates, next to the seed's claims.

    python benchmarks/bench_proofs_audit.py [--proofs N] [--events N] [--batch N]

Prints proofs generated and verified per second: one Ed25519 signature each (version 1,
PyNaCl), and batched (version 2: one signature per batch, an inclusion path each). Then
audit events appended per second (signed, hash-linked, one SQLite transaction each,
fsync on commit), and full-trail verification in events/s.
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
from metanode_storage.crypto.batch_proof import BlockFields, ProofVerifier, seal_batch
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.proof import PROOF_TYPE, make_proof, manifest_hash


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def _batched(
    signer: NodeSigner, trusted: dict[str, bytes], hashes: list[str], manifest: bytes, batch: int
) -> tuple[int, float, float]:
    """Batched proofs: one signature per batch, an inclusion path per block; verified with
    one ProofVerifier per batch, as `proof verify` does for a bundle."""
    fields = [
        BlockFields(PROOF_TYPE, f"b{i}", h, 4096, 1, manifest.hex()) for i, h in enumerate(hashes)
    ]
    groups = [fields[i : i + batch] for i in range(0, len(fields), batch)]
    started = time.perf_counter()
    sealed = [seal_batch(signer, group) for group in groups]
    generate = time.perf_counter() - started
    started = time.perf_counter()
    for proofs in sealed:
        verifier = ProofVerifier(trusted)
        assert all(verifier.verify(p) for p in proofs)
    verify = time.perf_counter() - started
    return len(fields), generate, verify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proofs", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=1_000, help="blocks per batched proof")
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

    batched, batch_generate, batch_verify = _batched(signer, trusted, hashes, manifest, args.batch)

    with tempfile.TemporaryDirectory() as tmp:
        trail = AuditTrail(Path(tmp) / "audit.sqlite", "metanode/bench", signer, create=True)
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

    per_batch = f"batches of {args.batch:,}"
    rows = [
        (
            "proof generation, one signature each (v1)",
            f"{args.proofs:,}",
            _rate(args.proofs, generate),
            "100,000/s",
        ),
        (
            "proof verification, one signature each (v1)",
            f"{args.proofs:,}",
            _rate(args.proofs, verify),
            "200,000/s",
        ),
        (
            f"proof generation, {per_batch} (v2)",
            f"{batched:,}",
            _rate(batched, batch_generate),
            "100,000/s",
        ),
        (
            f"proof verification, {per_batch} (v2)",
            f"{batched:,}",
            _rate(batched, batch_verify),
            "200,000/s",
        ),
        ("audit append (durable)", f"{args.events:,}", _rate(args.events, append), "-"),
        ("audit full-trail verify", f"{args.events:,}", _rate(args.events, full), "-"),
    ]
    print_table(("operation", "count", "measured", "seed claims"), rows)


if __name__ == "__main__":
    main()
