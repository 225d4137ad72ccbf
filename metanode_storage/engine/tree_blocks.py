"""The use cases of directory-tree blocks: store a tree, read its manifest, restore it
or one of its files (the formats and rules are engine/tree.py's).

``TreeBlocks`` is handed the collaborators it needs by ``Node``, which keeps
one-line delegations for its callers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Executor
from hashlib import sha256
from pathlib import Path
from typing import BinaryIO

from metanode_storage.audit.trail import OK, RETRIEVE
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.crypto.aead import keyed_hash
from metanode_storage.crypto.keystore import KeyMaterial
from metanode_storage.engine import tree
from metanode_storage.engine.auditing import NodeAudit
from metanode_storage.engine.model import ContainerBlock, Progress, no_progress
from metanode_storage.engine.qlock import QLock
from metanode_storage.engine.retrieval import BlockReads
from metanode_storage.engine.storing import BlockStores, NewBlock
from metanode_storage.engine.tree_input import TreeInput
from metanode_storage.errors import InputError
from metanode_storage.fileio import sync_filesystem


class TreeBlocks:
    def __init__(
        self,
        *,
        lock: QLock,
        blockmap: BlockMap,
        reads: BlockReads,
        stores: BlockStores,
        audit: NodeAudit,
        io_pool: Executor,
        keys: KeyMaterial,
        own: Sequence[Path],
    ) -> None:
        """``own``: the node's home and its local providers' directories."""
        self._lock = lock
        self._blockmap = blockmap
        self._reads = reads
        self._stores = stores
        self._audit = audit
        self._io_pool = io_pool
        self._keys = keys
        self._own = own

    def use_keys(self, keys: KeyMaterial) -> None:
        """After a key rotation: bundles are cut by these keys' dedup key."""
        self._keys = keys

    def store(
        self,
        roots: Sequence[Path],
        progress: Progress = no_progress,
        strict: bool = False,
        listed: Progress = no_progress,
    ) -> tuple[ContainerBlock, tree.WalkReport]:
        """Store files, directories, symlinks and empty directories below ``roots`` as one
        block. Devices, sockets and FIFOs are skipped; an unreadable entry is reported in
        the returned report and the rest is stored, unless ``strict``. This node's home
        and local providers' directories are left out (and reported): a backup of a
        directory that holds them would otherwise store the node's packs inside itself,
        and every later one the packs of the one before. ``listed`` hears the bytes of
        the files found, once the tree is walked (a progress bar's total)."""
        report = tree.WalkReport()
        entries = tree.walk(roots, report, self.own_directories())
        report.refuse(entries, strict)
        listed(sum(e.size for e in tree.files_of(entries)))  # what progress will count to
        cut_key = keyed_hash(self._keys.dedup_key.reveal(), b"tree bundle cuts")
        reading = TreeInput(entries, report, strict=strict, cut_key=cut_key, pool=self._io_pool)
        with self._lock.shared("store a tree"):
            started = time.perf_counter()
            written = self._stores.put_chunks(
                reading.streams(),
                progress,
                lambda r: reading.heard(r.first_chunk, r.chunks, r.sha256, r.size),
            )
            whole_tree = NewBlock(
                0,
                len(written.chunk_ids),
                sha256(reading.manifest).hexdigest(),
                reading.size(),
                roots[0].name if len(roots) == 1 else "",
                {"tree": {"manifest_chunks": written.streams[-1].chunks}},
            )
            (view,) = self._stores.commit(written, [whole_tree], started)
            return view, report

    def own_directories(self) -> set[tree.DirectoryId]:
        """This node's home and its local providers' directories."""
        return tree.directory_ids(self._own)

    def refuse_own_state(self, output: Path | str) -> None:
        """Output the user names may go anywhere but into this node's home or a local
        provider's directory: `get -o` there replaced the keystore, the map or a pack
        (cp's rule, writing over an existing file, then destroys the node)."""
        if tree.lies_within(Path(output), self.own_directories()):
            raise InputError(
                f"{output} lies inside this node's home or a local provider's directory",
                "write the output somewhere else",
            )

    def entries(self, block_id: str) -> list[tree.Entry]:
        """The manifest of a tree block, checked against the block's signed data hash."""
        with self._lock.shared("read a tree"):
            block = self._blockmap.get_block(block_id)
            return self._reads.manifest(block)

    def restore(
        self,
        block_id: str,
        target: Path,
        only: str | None = None,
        progress: Progress = no_progress,
    ) -> list[tree.Entry]:
        """Restore a tree block (or the entry ``only`` and what is below it) into the
        directory ``target``, created if missing; every file checked against the manifest,
        and all of them on disk when this returns, as ``Node.retrieve_to_path`` leaves a file."""
        self.refuse_own_state(target)
        with self._lock.shared("retrieve a tree"):
            block = self._blockmap.get_block(block_id)
            entries = tree.select(self._reads.manifest(block), only)
            self._reads.tree_restore(self._io_pool).restore(block, entries, str(target), progress)
            try:
                sync_filesystem(target)
            except OSError as exc:
                raise InputError(f"cannot flush {target} to disk: {exc.strerror}") from None
            self._audit.record(RETRIEVE, block.block_id, OK, {"tree_entries": len(entries)})
            return entries

    def restore_file(
        self, block_id: str, path: str, sink: BinaryIO, progress: Progress = no_progress
    ) -> tree.Entry:
        """One file of a tree block, verified, to ``sink``."""
        with self._lock.shared("retrieve a file of a tree"):
            block = self._blockmap.get_block(block_id)
            entry = tree.file_entry(self._reads.manifest(block), path)
            self._reads.tree_restore(self._io_pool).copy_file(block, entry, sink, progress)
            self._audit.record(RETRIEVE, block.block_id, OK, {"tree_entries": 1})
            return entry
