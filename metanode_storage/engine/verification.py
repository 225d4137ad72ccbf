"""Verifying blocks: their signatures, and every replica of every chunk."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from metanode_storage.audit.trail import FAILED, OK, VIOLATION
from metanode_storage.blockmap.records import BlockRecord
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.crypto.batch_proof import BatchedProof, ProofVerifier
from metanode_storage.crypto.signing import PublicKey, verify_signature
from metanode_storage.engine.proof import block_message, block_proof, manifest_hash
from metanode_storage.engine.reader import GOOD, ChunkReader, ReplicaCheck
from metanode_storage.errors import SignatureInvalid


@dataclass(frozen=True)
class BlockVerification:
    block_id: str
    ok: bool  # every chunk has enough good copies to be read and the signatures hold
    replicas_checked: int
    faults: list[ReplicaCheck] = field(default_factory=list)  # missing or corrupt replicas
    unreachable: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def audit_status(self) -> str:
        if not self.ok or self.faults:
            return VIOLATION
        return FAILED if self.unreachable else OK

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> BlockVerification:
        """Back from ``dataclasses.asdict`` (what the service sends a remote client)."""
        return cls(
            str(doc["block_id"]),
            bool(doc["ok"]),
            int(doc["replicas_checked"]),
            [ReplicaCheck(**f) for f in doc.get("faults", [])],
            [str(p) for p in doc.get("unreachable", [])],
            str(doc.get("error", "")),
        )

    def audit_detail(self) -> dict[str, Any]:
        return {
            "replicas_checked": self.replicas_checked,
            "faults": [[f.provider, f.state] for f in self.faults],
            "unreachable": self.unreachable,
            "error": self.error,
        }


def check_block_signatures(
    block: BlockRecord, trusted_keys: Mapping[str, PublicKey], batches: ProofVerifier | None = None
) -> None:
    """The block's proof and VM signature must hold under one of the node's keys
    (retired ones included) and agree with the block's chunk list. ``batches`` carries
    the batch seals already checked, so blocks signed together cost one signature check."""
    failed = _failed_signature(block, trusted_keys, batches)
    if failed:
        raise SignatureInvalid(
            f"the {failed} of block {block.block_id} does not verify",
            "the block map was altered; restore a map backup",
        )


def _failed_signature(
    block: BlockRecord, trusted_keys: Mapping[str, PublicKey], batches: ProofVerifier | None
) -> str:
    """Which of the block's signatures fails ("" when they hold)."""
    try:
        proof = block_proof(block)
    except ValueError:
        return "proof"
    manifest = manifest_hash(block.chunk_ids).hex()
    if (proof.block_id, proof.data_hash, proof.size, proof.manifest_hash) != (
        block.block_id,
        block.data_hash,
        block.size,
        manifest,
    ):
        return "proof"
    if isinstance(proof, BatchedProof):
        # A batched proof covers every field of the row itself; the row's signature is the
        # batch seal's, kept beside it.
        holds = (
            proof.timestamp == block.created_at
            and proof.seal.signature_hex == block.vm_signature
            and (batches or ProofVerifier(trusted_keys)).verify(proof)
        )
        return "" if holds else "proof"
    if not proof.verify(trusted_keys):
        return "proof"
    message = block_message(
        block.block_id, block.data_hash, proof.proof_hash, block.size, block.created_at, manifest
    )
    public = trusted_keys[proof.key_id]
    return (
        ""
        if verify_signature(public.ed25519, message, bytes.fromhex(block.vm_signature))
        else ("VM signature")
    )


def verify_block(
    block: BlockRecord,
    blockmap: BlockMap,
    reader: ChunkReader,
    io_pool: Executor,
    trusted_keys: Mapping[str, PublicKey],
    progress: Callable[[int], None],
    batches: ProofVerifier | None = None,
    checked: dict[bytes, list[ReplicaCheck]] | None = None,
) -> BlockVerification:
    """Fetch and check every replica; record faults (and clear healed ones) in the map.
    ``checked``: each chunk's checks so far in this run, kept and reused, so that blocks
    sharing a chunk (a batch's bundle, deduplicated data) download it only once."""
    checked = {} if checked is None else checked
    try:
        check_block_signatures(block, trusted_keys, batches)
    except SignatureInvalid as exc:
        return BlockVerification(block.block_id, False, 0, error=exc.message)
    faults: list[ReplicaCheck] = []
    unreachable: set[str] = set()
    replicas_checked = unreadable = 0
    for chunk_id in block.chunk_ids:
        record = blockmap.get_chunk(chunk_id)
        if record is None:
            return BlockVerification(
                block.block_id,
                False,
                replicas_checked,
                faults,
                sorted(unreachable),
                f"chunk {chunk_id.hex()[:12]} is not in the map",
            )
        results = checked.get(chunk_id)
        if results is None:
            futures = [io_pool.submit(reader.check_replica, record, r) for r in record.replicas]
            results = checked[chunk_id] = [f.result()[0] for f in futures]
            for check in results:
                if check.is_fault:
                    blockmap.record_fault(chunk_id, check.provider, check.state)
                elif check.state == GOOD:
                    blockmap.clear_fault(chunk_id, check.provider)
        replicas_checked += len(results)
        faults += [check for check in results if check.is_fault]
        unreachable.update(c.provider for c in results if not c.is_fault and c.state != GOOD)
        if sum(c.state == GOOD for c in results) < record.needed:
            unreadable += 1
        progress(record.plain_size)
    error = f"{unreadable} chunk(s) cannot be read (too few good copies)" if unreadable else ""
    return BlockVerification(
        block.block_id, not unreadable, replicas_checked, faults, sorted(unreachable), error
    )
