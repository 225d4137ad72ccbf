"""A node: the use cases a CLI, a service or a script calls.

``Node`` never prints. Long operations report progress through a callback
that receives the number of bytes just processed.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from metanode_storage.audit.trail import (
    DELETE,
    OK,
    VERIFY,
    AuditTrail,
    NewEvent,
    audit_origin,
)
from metanode_storage.blockmap.leases import Lease, LeaseTable
from metanode_storage.blockmap.records import BlockRecord
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.blockmap.totals import MapStats
from metanode_storage.config.paths import NodeLayout, resolve_home
from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import NodeSettings, load_settings
from metanode_storage.crypto.aead import keyed_hash
from metanode_storage.crypto.keystore import KeyDeriver, KeyMaterial, read_keystore
from metanode_storage.database import DatabaseUrl
from metanode_storage.engine import tree
from metanode_storage.engine.auditing import NodeAudit
from metanode_storage.engine.backup_log import BackupState
from metanode_storage.engine.batch_input import BatchInput
from metanode_storage.engine.maintenance import backup_map, collect_garbage, tail_marks
from metanode_storage.engine.metrics import Metrics
from metanode_storage.engine.model import ContainerBlock, Progress, no_progress
from metanode_storage.engine.packs import PackWriter
from metanode_storage.engine.placement import providers_for_a_store
from metanode_storage.engine.proof import block_proof, proof_document
from metanode_storage.engine.qlock import BLOCKS, QLock
from metanode_storage.engine.reader import ChunkReader, ReplicaCheck
from metanode_storage.engine.removal import remove_block
from metanode_storage.engine.repack import RepackReport, repack
from metanode_storage.engine.retrieval import BlockReads
from metanode_storage.engine.shared_home import (
    BACKUP_STATE,
    CONFIG,
    KEYSTORE,
    HomeFile,
    LocalFile,
    SharedFiles,
    SharedStateFile,
    sync_file,
    sync_home,
)
from metanode_storage.engine.status import (
    MapBackupStatus,
    NodeStatus,
    Protection,
    exposure,
    measure_status,
)
from metanode_storage.engine.storing import BlockStores, NewBlock
from metanode_storage.engine.tree_blocks import TreeBlocks
from metanode_storage.engine.verification import (
    BlockVerification,
    verify_block,
)
from metanode_storage.engine.views import BlockViews
from metanode_storage.engine.writer import ChunkWriter
from metanode_storage.errors import (
    InputError,
    MetanodeError,
)
from metanode_storage.fileio import output_file
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.catalogue import open_provider_or_stand_in
from metanode_storage.providers.health import HealthBoard, MonitoredBlobStore

_CHUNKS_IN_FLIGHT = 4  # bounds memory: at most this many chunks are being sealed or fetched
_IO_THREADS = 16
_AUDIT_TAIL = 200  # events beyond the last map backup segment before one is written
log = logging.getLogger("metanode.node")


class Node:
    def __init__(
        self,
        layout: NodeLayout,
        settings: NodeSettings,
        keys: KeyMaterial,
        blockmap: BlockMap,
        shared: SharedFiles | None = None,
    ) -> None:
        self.layout = layout
        self.shared = shared  # the config and keystore other hosts share (a shared map)
        self.backup_state_file: HomeFile = (
            SharedStateFile(shared, BACKUP_STATE)
            if shared is not None
            else LocalFile(layout.home / BACKUP_STATE)
        )
        self.settings = settings
        self.keys = keys
        self.blockmap = blockmap
        self.health = HealthBoard(layout.health)
        self.providers: dict[str, BlobStore] = {
            p.name: MonitoredBlobStore(
                open_provider_or_stand_in(p, keys.provider_credentials.get(p.name)), self.health
            )
            for p in settings.providers
        }
        self.leases = LeaseTable(layout.map_at(settings.map_url))
        self.lock = QLock(self.leases, BLOCKS, on_takeover=self._record_takeover)
        self.backup_lock = QLock(self.leases, "backup", on_takeover=self._record_takeover)
        blockmap.fence = self._fence
        blockmap.recount_totals()  # once, for a map from before every total was kept
        self.io_pool = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="metanode-io")
        self._workers = ThreadPoolExecutor(_CHUNKS_IN_FLIGHT, thread_name_prefix="metanode-chunk")
        # one set of open packs for every store of this run: concurrent stores share
        # pack uploads as they share the map commit (engine/packs.py)
        self._store_packs = self._pack_writer()
        data_keys = {k.key_id: k.key.reveal() for k in keys.data_keys}
        self.reader = ChunkReader(
            self.providers, keys.dedup_key.reveal(), data_keys, self.health.is_offline
        )
        self.views = BlockViews(blockmap, settings.providers)
        self.reads = BlockReads(
            blockmap, self.reader, self._workers, _CHUNKS_IN_FLIGHT, keys.public_keys()
        )
        self.passphrase: Secret | None = None
        self._backed_up_mark = blockmap.content_change_mark()  # what the last backup carried
        self._keystore_rewritten = False
        trail = AuditTrail(
            layout.trail_at(settings.map_url), audit_origin(settings.node_id), keys.signer
        )
        trail.fence = self._fence
        self.audit = NodeAudit(
            trail,
            self.providers,
            keys,
            settings.audit_enabled,
            self.io_pool,
            self.health.is_offline,
        )
        self.metrics = Metrics(layout.metrics)  # never raises: metrics are housekeeping
        self.stores = BlockStores(
            blockmap,
            keys,
            settings,
            self.chunk_writer,
            self._workers,
            _CHUNKS_IN_FLIGHT,
            self.audit,
            self.metrics,
        )
        self.trees = TreeBlocks(
            lock=self.lock,
            blockmap=blockmap,
            reads=self.reads,
            stores=self.stores,
            audit=self.audit,
            io_pool=self.io_pool,
            keys=keys,
            own=[layout.home, *(Path(p.path) for p in settings.providers if p.is_local)],
        )

    @classmethod
    def open(
        cls, home: Path | str | None, passphrase: Secret, derive_key: KeyDeriver | None = None
    ) -> Node:
        """Open the node; ``derive_key`` unlocks the keystore without running Argon2id
        here (a session agent's), else the passphrase goes through it."""
        layout = NodeLayout(resolve_home(home))
        settings = load_settings(layout.config)
        shared = SharedFiles(DatabaseUrl(settings.map_url)) if settings.map_url else None
        try:
            if shared is not None:  # take what another host changed since this one's last run
                sync_file(layout, shared, KEYSTORE, sealed=False)
            keys = read_keystore(layout.keystore, passphrase, derive_key)
            if shared is not None:
                shared.map_key = keys.map_key.reveal()
                if sync_file(layout, shared, CONFIG, sealed=True):
                    settings = load_settings(layout.config)
            blockmap = BlockMap(layout.map_at(settings.map_url), keys.map_key.reveal())
        except BaseException:
            if shared is not None:
                shared.close()
            raise
        try:
            node = cls(layout, settings, keys, blockmap, shared)
        except BaseException:
            blockmap.close()
            if shared is not None:
                shared.close()
            raise
        node.passphrase = passphrase  # kept to rewrite the keystore on key rotation
        node.audit.reread_keys = node._reread_keys
        return node

    def _reread_keys(self) -> bool:
        """Use the keystore as it is on disk now, if another run added signing keys."""
        if self.passphrase is None:
            return False
        keys = read_keystore(self.layout.keystore, self.passphrase)
        if set(keys.public_keys()) <= set(self.reads.trusted_keys):
            return False
        self.reload_keys(keys, rewritten_here=False)  # another run backs up its own
        return True

    @property
    def changed(self) -> bool:
        """This run changed what the node stores, or its keystore: back them up."""
        return (
            self._keystore_rewritten or self.blockmap.content_change_mark() != self._backed_up_mark
        )

    def reload_keys(self, keys: KeyMaterial, rewritten_here: bool = True) -> None:
        """Use a rewritten keystore's keys from now on (after a rotation); one this run
        rewrote is backed up at close."""
        self._keystore_rewritten |= rewritten_here
        self.keys = keys
        self.reads.trust(keys.public_keys())
        self.reader.use_data_keys({k.key_id: k.key.reveal() for k in keys.data_keys})
        self.audit.use_keys(keys)
        self.stores.use_keys(keys)
        self.trees.use_keys(keys)
        self._store_packs = self._pack_writer()

    def _pack_writer(self) -> PackWriter:
        return PackWriter(
            self.providers, self.io_pool, self.keys.owner_key, self.settings.pack_target_bytes
        )

    def close(self) -> None:
        self._workers.shutdown(wait=True)
        self.housekeeping()
        self.lock.close()
        self.backup_lock.close()
        self.leases.close()
        self.audit.close()
        self.io_pool.shutdown(wait=True)
        self.reader.close()
        self.health.save()
        self.metrics.close()
        self.blockmap.close()
        if self.shared is not None:  # give the other hosts what this run changed
            with closing(self.shared):
                sync_home(self.layout, self.shared)

    def _fence(self) -> int | None:
        """The fencing token of this run's hold on the blocks lock: map writes check it,
        audit events carry it."""
        return self.lock.token

    def _record_takeover(self, stale: list[Lease], by: Lease | None) -> None:
        """Taking over a stale lease is recorded: whose it was, until when it held, and
        the lease that followed it."""
        self.audit.record_many(
            [("lock_takeover", "", OK, {**s.to_dict(), "by_token": by and by.token}) for s in stale]
        )

    def housekeeping(self) -> None:
        """After the work: back up what changed, then publish the audit checkpoint.

        Reads change nothing, so they upload no map backup; a command that recorded
        events publishes one checkpoint (carrying the events no backup holds yet).
        Neither may fail a command whose work succeeded: a failure is a warning, a
        counter in the metrics, a line in `status`, and is caught up by the next run.
        """
        marks = tail_marks(self)
        if self.settings.backup_enabled:
            if self.changed or self._audit_tail_is_long(marks):
                self._attempt("map backup", self._back_up_map)
                marks = tail_marks(self)  # the backup moved them
        else:
            self.blockmap.forget_changes(self.blockmap.change_mark())  # no backup needs them
        if self.audit.enabled and self.audit.recorded:
            self._attempt("audit checkpoint", lambda: self.audit.publish(marks))

    def _audit_tail_is_long(self, marks: dict[str, tuple[int, int]]) -> bool:
        """A node that only reads still gets its audit events into a backup segment,
        every _AUDIT_TAIL events, so checkpoint blobs stay small."""
        held, _ = self.audit.trail.marks()
        return bool(marks) and held - min(m[0] for m in marks.values()) > _AUDIT_TAIL

    def _attempt(self, what: str, work: Callable[[], object]) -> None:
        try:
            work()
        except MetanodeError as exc:
            log.warning("%s did not complete (the next run retries): %s", what, exc)
            self.metrics.add(housekeeping_failures=1)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- store -------------------------------------------------------------------

    def store(
        self, stream: BinaryIO, name: str = "", progress: Progress = no_progress
    ) -> ContainerBlock:
        """Store everything ``stream`` yields as one block; return the block once it is durable.

        The map row is committed only after every new chunk has all its
        replicas written, so an interruption at any point leaves no partial
        block visible (at worst orphan blobs, which `gc` removes).
        """
        (block,) = self._store_streams([(name, stream)], progress, "store")
        return block

    def store_bytes(self, data: bytes, name: str = "") -> ContainerBlock:
        return self.store(io.BytesIO(data), name)

    def store_many(
        self, objects: Iterable[tuple[str, BinaryIO | bytes]], progress: Progress = no_progress
    ) -> list[ContainerBlock]:
        """Store each (name, data) as its own block, committed as a group: one map
        transaction, one audit transaction and one signature for all of them (a batched
        proof each). Small objects given as bytes share bundles (engine/batch_input.py).
        The promise is store()'s: none is listed until every replica of every one is
        durable, and an interruption leaves none of them listed."""
        return self._store_streams(list(objects), progress, "store a batch")

    def _store_streams(
        self, items: Sequence[tuple[str, BinaryIO | bytes]], progress: Progress, purpose: str
    ) -> list[ContainerBlock]:
        """Each (name, data) as a block of its own, all committed together."""
        cut_key = keyed_hash(self.keys.dedup_key.reveal(), b"batch bundle cuts")
        batch = BatchInput(items, cut_key)
        with self.lock.shared(purpose):
            started = time.perf_counter()
            written = self.stores.put_chunks(batch.streams(), progress)
            placed = batch.placed(written.streams)
            return self.stores.commit(written, [NewBlock.of_object(o) for o in placed], started)

    def store_file(self, path: Path | str, progress: Progress = no_progress) -> ContainerBlock:
        try:
            with open(path, "rb") as fh:
                return self.store(fh, Path(path).name, progress)
        except IsADirectoryError:
            raise InputError(f"{path} is a directory", "store one file at a time") from None
        except OSError as exc:
            # Only open() gets here: reads inside store() raise InputError themselves.
            raise InputError(
                f"cannot read {path}: {exc.strerror}", "check the path and its permissions"
            ) from None

    def chunk_writer(self) -> ChunkWriter:
        """A writer for one store (or one rewrite) under the node's redundancy: at most
        providers_per_store providers, drawn at random, those known Offline held back as
        a last resort."""
        keys = self.keys
        candidates, last_resort = providers_for_a_store(
            list(self.providers), self.health.is_offline, self.settings.providers_per_store
        )
        return ChunkWriter(
            self.providers,
            self.io_pool,
            candidates=candidates,
            last_resort=last_resort,
            redundancy=self.settings.scheme,
            allow_under_replication=self.settings.allow_under_replication,
            data_key_id=keys.current_data_key,
            data_key=keys.data_key(keys.current_data_key),
            owner_key=keys.owner_key,
            compress=self.settings.compression,
            encrypt=self.settings.encryption,
            pack_target_bytes=self.settings.pack_target_bytes,
            packs=self._store_packs,
        )

    # -- directory trees (engine/tree_blocks.py) ---------------------------------------

    def store_tree(
        self,
        roots: Sequence[Path],
        progress: Progress = no_progress,
        strict: bool = False,
        listed: Progress = no_progress,
    ) -> tuple[ContainerBlock, tree.WalkReport]:
        return self.trees.store(roots, progress, strict, listed)

    def refuse_own_state(self, output: Path | str) -> None:
        self.trees.refuse_own_state(output)

    def size_and_kind(self, block_id: str) -> tuple[int, bool]:
        """(size in bytes, whether it is a directory tree): what a read needs to know
        first, without gathering every chunk's locations as ``describe`` does."""
        block = self.blockmap.get_block(block_id)
        return block.size, "tree" in block.extra

    def tree_entries(self, block_id: str) -> list[tree.Entry]:
        return self.trees.entries(block_id)

    def retrieve_tree(
        self,
        block_id: str,
        target: Path,
        only: str | None = None,
        progress: Progress = no_progress,
    ) -> list[tree.Entry]:
        return self.trees.restore(block_id, target, only, progress)

    def retrieve_tree_file(
        self, block_id: str, path: str, sink: BinaryIO, progress: Progress = no_progress
    ) -> tree.Entry:
        return self.trees.restore_file(block_id, path, sink, progress)

    # -- retrieve ----------------------------------------------------------------

    def retrieve(
        self, block_id: str, sink: BinaryIO, progress: Progress = no_progress
    ) -> ContainerBlock:
        """Write the block's bytes to ``sink``.

        Each chunk reaches ``sink`` only after its AES-GCM tag checks out under
        the chunk's own key and address; the whole-object SHA-256 in the signed
        proof is checked at the end (``retrieve_to_path`` installs no file that
        fails it). ``verify`` also checks each replica's keyed content address,
        which a read leaves to the SHA-256. Corrupt or missing replicas met on the
        way are recorded for status and repair; the read still succeeds while
        one good copy of every chunk exists.
        """
        with self.lock.shared("retrieve"):
            block = self.blockmap.get_block(block_id)
            started = time.perf_counter()
            events: list[NewEvent] = []
            try:
                failovers = self.reads.stream_audited(block, sink, events, progress)
            finally:
                self.audit.record_many(events)
            self.metrics.add(
                retrieve_ops=1,
                retrieve_bytes=block.size,
                retrieve_seconds=time.perf_counter() - started,
                failovers=failovers,
            )
            return self.views.of(block)

    def retrieve_many(self, block_ids: Iterable[str]) -> list[bytes]:
        """The bytes of each block, in order, each verified as retrieve() verifies it;
        their audit events go in one transaction. For many small blocks: every block is
        held in memory. The first block that cannot be read raises, after the events of
        those before it (and its own) are recorded."""
        with self.lock.shared("retrieve a batch"):
            started = time.perf_counter()
            events: list[NewEvent] = []
            found: list[bytes] = []
            failovers = size = 0
            try:
                blocks = self.blockmap.get_blocks(list(block_ids))
                read_ahead = self.reads.read_packed(blocks)
                for block in blocks:
                    sink = io.BytesIO()
                    failovers += self.reads.stream_audited(
                        block, sink, events, no_progress, read_ahead
                    )
                    found.append(sink.getvalue())
                    size += block.size
            finally:
                self.audit.record_many(events)
            self.metrics.add(
                retrieve_ops=len(found),
                retrieve_bytes=size,
                retrieve_seconds=time.perf_counter() - started,
                failovers=failovers,
            )
            return found

    def retrieve_bytes(self, block_id: str) -> bytes:
        buffer = io.BytesIO()
        self.retrieve(block_id, buffer)
        return buffer.getvalue()

    def retrieve_to_path(
        self, block_id: str, path: Path | str, progress: Progress = no_progress
    ) -> ContainerBlock:
        """Retrieve into ``path`` as ``cp`` would write it (fileio.output_file): a regular
        file through a temp file and a rename, so a failed read leaves no partial file."""
        self.refuse_own_state(path)
        with output_file(path) as fh:
            return self.retrieve(block_id, fh, progress)

    # -- verify --------------------------------------------------------------------

    def verify(self, block_id: str, progress: Progress = no_progress) -> BlockVerification:
        """Check every replica of every chunk of the block, not just one per chunk."""
        with self.lock.shared("verify"):
            block = self.blockmap.get_block(block_id)
            result = self.verify_record(block, progress)
            self.blockmap.mark_audited([block.block_id])  # status: when it was last checked
            return result

    def verify_all(self, progress: Progress = no_progress) -> Iterator[BlockVerification]:
        """Verify every block; their audit events are appended a group at a time. As
        after an integrity audit, `status` then counts every block checked, once every
        event is in the trail."""
        with self.lock.shared("verify"):
            done: list[str] = []
            with self.audit.in_groups() as record:
                checked: dict[bytes, list[ReplicaCheck]] = {}
                for block in self.blockmap.blocks():
                    yield self.verify_record(block, progress, checked, record)
                    done.append(block.block_id)
            self.blockmap.mark_audited(done)

    def verify_record(
        self,
        block: BlockRecord,
        progress: Progress,
        checked: dict[bytes, list[ReplicaCheck]] | None = None,
        record: Callable[[NewEvent], None] | None = None,
    ) -> BlockVerification:
        """Verify one block (the caller holds the lock) and audit the outcome, at once or
        through ``record`` (``NodeAudit.in_groups``); ``checked`` carries chunks' checks
        from block to block in one run (verify_block)."""
        result = verify_block(
            block,
            self.blockmap,
            self.reader,
            self.io_pool,
            self.reads.trusted_keys,
            progress,
            self.reads.verifier,
            checked,
        )
        event = (VERIFY, block.block_id, result.audit_status, result.audit_detail())
        if record is None:
            self.audit.record_many([event])
        else:
            record(event)
        return result

    # -- remove, list, status ---------------------------------------------------

    def remove(self, block_id: str) -> int:
        """Delete a block, and every blob no other block needs; return blobs deleted."""
        ((_, deleted),) = self.remove_many([block_id])
        return deleted

    def remove_many(
        self, block_ids: Sequence[str], progress: Progress = no_progress
    ) -> list[tuple[str, int]]:
        """Delete blocks (whole ids or unique prefixes), each with every blob no other
        block needs; return (whole id, blobs deleted) per block, in order, each once.
        Every id is resolved before any block is deleted, so one that names no block, or
        more than one, leaves them all stored (engine/removal.py)."""
        with self.lock.exclusive("remove blocks"):
            whole = list(dict.fromkeys(self.blockmap.resolve_block_id(b) for b in block_ids))
            removed: list[tuple[str, int]] = []
            try:
                for block_id in whole:
                    removed.append(
                        (block_id, remove_block(self.blockmap, self.providers, block_id))
                    )
                    progress(1)
            except BaseException:
                if removed:  # the error names the block that failed, not those that went
                    log.warning("deleted before the failure: %s", " ".join(b for b, _ in removed))
                raise
            finally:  # the deletions made, even when a later one failed
                self.audit.record_many([(DELETE, b, OK, {"blobs_deleted": n}) for b, n in removed])
            return removed

    def collect_garbage(self, dry_run: bool = False) -> dict[str, int]:
        return collect_garbage(self, dry_run)

    def repack(self, dry_run: bool = False) -> RepackReport:
        """Rewrite packs whose live chunks fill less than ``repack_below`` of them."""
        with self.lock.exclusive("repack"):
            report = repack(
                self.blockmap,
                self.providers,
                self.reader,
                self.io_pool,
                owner_key=self.keys.owner_key,
                compress=self.settings.compression,
                encrypt=self.settings.encryption,
                target_bytes=self.settings.pack_target_bytes,
                repack_below=self.settings.repack_below,
                dry_run=dry_run,
            )
            if not dry_run and report.packs_rewritten:
                self.audit.record(
                    "repack",
                    detail={
                        "packs_rewritten": report.packs_rewritten,
                        "bytes_reclaimed": report.bytes_reclaimed,
                    },
                )
            return report

    def backup_map(self) -> dict[str, str]:
        """An explicit backup: every provider is tried, those known Offline too."""
        return self._back_up_map(try_offline=True)

    def _back_up_map(self, try_offline: bool = False) -> dict[str, str]:
        mark = self.blockmap.content_change_mark()  # later changes wait for the next
        outcome = backup_map(self, try_offline)
        self._backed_up_mark, self._keystore_rewritten = mark, False
        return outcome

    def map_stats(self) -> MapStats:
        """Totals the map keeps (blocks, chunks, bytes, faults): no provider is asked."""
        return self.blockmap.stats()

    def export_proofs(self, block_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Each block's proof file (engine/proof.py) for an auditor, in order; the export
        is recorded in the audit trail."""
        origin = f"metanode/{self.settings.node_id}"
        documents = [
            proof_document(block_proof(self.blockmap.get_block(b)), origin) for b in block_ids
        ]
        self.audit.record_many(
            [("proof_export", d["proof"]["block_id"], OK, None) for d in documents]
        )
        return documents

    def blocks(self) -> Iterator[ContainerBlock]:
        """Every block's view, oldest first (engine/views.py)."""
        return self.views.every()

    def describe(self, block_id: str) -> ContainerBlock:
        return self.views.of(self.blockmap.get_block(block_id))

    def status(self, probe_offline: bool = False) -> NodeStatus:
        """Measured now; providers known Offline are probed only with ``probe_offline``
        (or once the health board's retry window has passed)."""
        stats = self.blockmap.stats()
        report = measure_status(
            self.settings,
            self.providers,
            self.health,
            probe_offline,
            stats,
            self.blockmap.audit_coverage(),
            MapBackupStatus.of(self.backup_log_state(), self.settings.backup_enabled),
            Protection.of(self.keys.signer, len(self.keys.recovery_recipients)),
            partial(exposure, self.blockmap, stats),
        )
        self.health.save()
        return report

    def backup_log_state(self) -> BackupState:
        """What each provider's map backup log holds, as this node last wrote it."""
        return BackupState.load(self.backup_state_file)
