"""Reading one chunk with failover, and checking one replica, with every byte verified.

A replica counts as good only if its AES-GCM tag (or HMAC) holds, its frame
is consistent, and the plaintext has the chunk's size and keyed address.
A fragment of an erasure-coded chunk counts as good if its seal holds (bound to
the chunk and the fragment's index); the chunk rebuilt from K good fragments is
then held to the same size and address as a replica.
A provider that does not answer is skipped for the rest of the run.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from metanode_storage.blockmap.records import ChunkRecord, Replica
from metanode_storage.crypto import aead
from metanode_storage.engine import blobformat, erasure
from metanode_storage.engine.chunk_keys import unwrap_chunk_key
from metanode_storage.engine.pack_groups import PackGroup, pack_groups, spans
from metanode_storage.engine.placement import batch_rank, read_order
from metanode_storage.errors import (
    IntegrityError,
    MetanodeError,
    ObjectNotFound,
    ProviderError,
    ProviderUnavailable,
)
from metanode_storage.providers.base import BlobStore

MISSING = "missing"
CORRUPT = "corrupt"
UNREACHABLE = "unreachable"
UNCONFIGURED = "unconfigured"
GOOD = "good"


def _failure(provider: str, exc: ProviderError) -> ReplicaCheck:
    if isinstance(exc, ObjectNotFound):
        return ReplicaCheck(provider, MISSING, "blob not found")
    return ReplicaCheck(provider, UNREACHABLE, exc.message)


@dataclass(frozen=True)
class ReplicaCheck:
    provider: str
    state: str  # GOOD, MISSING, CORRUPT, UNREACHABLE or UNCONFIGURED
    detail: str = ""

    @property
    def is_fault(self) -> bool:
        """Missing or corrupt, or on a provider taken out of the config (it will not come
        back): the replica itself is lost to this node, not merely out of reach."""
        return self.state in (MISSING, CORRUPT, UNCONFIGURED)


class ChunkReader:
    def __init__(
        self,
        providers: Mapping[str, BlobStore],
        dedup_key: bytes,
        data_keys: Mapping[str, bytes],
        is_offline: Callable[[str], bool],
    ) -> None:
        self._providers = providers
        self._dedup_key = dedup_key
        self._data_keys = data_keys
        self._is_offline = is_offline
        # Fragment fetches run here, never in a pool whose tasks may themselves be reads.
        self._fragment_pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._fragment_pool is not None:
            self._fragment_pool.shutdown(wait=True)

    def use_data_keys(self, data_keys: Mapping[str, bytes]) -> None:
        self._data_keys = data_keys

    def chunk_key(self, record: ChunkRecord) -> bytes:
        """The chunk's own AES key, unwrapped from its record."""
        return unwrap_chunk_key(self._data_keys, record)

    def check_replica(
        self,
        record: ChunkRecord,
        replica: Replica,
        chunk_key: bytes | None = None,
        caller_hashes: bool = False,
    ) -> tuple[ReplicaCheck, bytes | None]:
        """Fetch and fully verify one replica: good with the chunk's plaintext (with the
        fragment itself, for a fragment), or why not. Never raises for a bad replica.
        ``caller_hashes``: as for ``read``."""
        store = self._providers.get(replica.provider)
        if store is None:
            return ReplicaCheck(
                replica.provider, UNCONFIGURED, "provider no longer configured"
            ), None
        key = chunk_key if chunk_key is not None else self.chunk_key(record)
        try:
            if replica.in_pack:  # only this chunk's bytes of the pack
                end = replica.offset + replica.size
                blob = store.get_range(replica.key, replica.offset, end)
            else:
                blob = store.get(replica.key)
        except ProviderError as exc:
            return _failure(replica.provider, exc), None
        return self._verify(record, replica, blob, key, caller_hashes)

    def _verify(
        self,
        record: ChunkRecord,
        replica: Replica,
        blob: bytes,
        key: bytes,
        caller_hashes: bool = False,
    ) -> tuple[ReplicaCheck, bytes | None]:
        """A replica's bytes as fetched: good (with the plaintext), or why not."""
        if replica.in_pack and len(blob) != replica.size:
            return ReplicaCheck(replica.provider, CORRUPT, "the pack is truncated"), None
        if replica.is_fragment:
            return self._verify_fragment(record, replica, blob, key)
        try:
            frame = blobformat.open_replica(blob, key, record.chunk_id)
            data = blobformat.read_frame(frame, record.plain_size)
        except blobformat.BlobInvalid as exc:
            return ReplicaCheck(replica.provider, CORRUPT, str(exc)), None
        if len(data) != record.plain_size:
            return ReplicaCheck(replica.provider, CORRUPT, "size mismatch"), None
        if not caller_hashes and not hmac.compare_digest(
            aead.keyed_hash(self._dedup_key, data), record.chunk_id
        ):
            return ReplicaCheck(replica.provider, CORRUPT, "content address mismatch"), None
        return ReplicaCheck(replica.provider, GOOD), data

    def _verify_fragment(
        self, record: ChunkRecord, replica: Replica, blob: bytes, key: bytes
    ) -> tuple[ReplicaCheck, bytes | None]:
        address = blobformat.piece_address(record.chunk_id, replica.fragment)
        try:
            fragment = blobformat.open_replica(blob, key, address)
            index = erasure.fragment_index(fragment)
        except (blobformat.BlobInvalid, erasure.FragmentsInvalid) as exc:
            return ReplicaCheck(replica.provider, CORRUPT, str(exc)), None
        if index != replica.fragment:
            return ReplicaCheck(replica.provider, CORRUPT, "fragment index mismatch"), None
        return ReplicaCheck(replica.provider, GOOD), fragment

    def pack_groups(self, records: Sequence[ChunkRecord]) -> list[PackGroup]:
        """``records`` grouped for ``read_group`` (engine/pack_groups.py)."""
        return pack_groups(records, self._providers, self._is_offline)

    def read_group(
        self, group: PackGroup, caller_hashes: bool = False
    ) -> Iterator[tuple[ChunkRecord, bytes, list[ReplicaCheck]]]:
        """Each chunk of a group with what was found on the way, reading its pack in spans
        (one request for neighbours: ``pack_groups.spans``). A chunk whose
        bytes there do not verify, or whose provider fails, goes through ``read`` (every
        copy, with failover), so every chunk given back is as verified as ``read`` makes
        it and a failure raises as ``read`` raises; what was wrong here is reported too.
        ``caller_hashes``: as for ``read`` (a batch retrieve, a tree restore: each
        object or file is held to its own signed SHA-256)."""
        if group.fragments:
            yield from self._read_fragment_batch([record for _, record in group.members])
            return
        for span in group.spans():
            if span[0][0] is None:  # a lone chunk outside the packs
                record = span[0][1]
                yield record, *self.read(record, caller_hashes)
                continue
            for _, record, check, data in self._fetch_span(span, caller_hashes):
                if data is not None:
                    yield record, data, [check]
                else:  # every copy again, with failover; what was wrong here is kept
                    again, checks = self.read(record, caller_hashes)
                    yield record, again, [check, *checks]

    def read_many(
        self, records: Sequence[ChunkRecord], caller_hashes: bool = False
    ) -> dict[bytes, tuple[bytes, list[ReplicaCheck]]]:
        """The chunks among ``records`` that could be read, pack by pack (``pack_groups``,
        ``read_group``), each verified as ``read`` verifies it. A group that fails is left
        out: the caller reads its chunks one by one, so each fails on its own."""
        found: dict[bytes, tuple[bytes, list[ReplicaCheck]]] = {}
        for group in self.pack_groups(records):
            try:
                for record, data, checks in self.read_group(group, caller_hashes):
                    found[record.chunk_id] = (data, checks)
            except MetanodeError:
                continue
        return found

    def read(
        self, record: ChunkRecord, caller_hashes: bool = False
    ) -> tuple[bytes, list[ReplicaCheck]]:
        """The chunk's plaintext from the first good replica, and what was wrong with others.

        ``caller_hashes``: the caller checks a SHA-256 over all the data it reads (a
        block's or a tree file's signed hash) before the data counts as retrieved, so
        the chunk's keyed content address, a second hash of every byte, is not computed
        (a third of a large restore's CPU). AES-GCM still authenticates every replica
        under the chunk's own key and address before a byte of it is returned. Checks
        that vouch for one replica on its own (verify, audit, repair) leave it False.

        Replicas are tried in random order (spreading load), with providers
        known to be Offline moved to the end: they cost nothing unless every
        other copy fails. Backup locations come last of all.
        """
        if record.is_erasure_coded:
            return self._read_fragments(record)
        chunk_key = self.chunk_key(record)
        checks: list[ReplicaCheck] = []
        for replica in read_order(record.replicas, record.backups, self._is_offline):
            check, data = self.check_replica(record, replica, chunk_key, caller_hashes)
            checks.append(check)
            if data is not None:
                return data, checks
        raise _unreadable(record, checks)

    def good_fragments(self, record: ChunkRecord) -> tuple[dict[int, bytes], list[ReplicaCheck]]:
        """K verified fragments (index -> fragment) of an erasure-coded chunk, and what was
        wrong on the way; fewer when fewer could be had. K fetches start at once, in the
        order ``read`` tries replicas; each one that fails starts the next candidate,
        and once K are good those not yet started never are."""
        chunk_key = self.chunk_key(record)
        candidates = deque(read_order(record.replicas, record.backups, self._is_offline))
        good: dict[int, bytes] = {}
        checks: list[ReplicaCheck] = []
        running: dict[Future[tuple[ReplicaCheck, bytes | None]], Replica] = {}
        pool = self._pool()
        while True:
            while candidates and len(good) + len(running) < record.needed:
                replica = candidates.popleft()
                if replica.fragment not in good:
                    fetch = pool.submit(self.check_replica, record, replica, chunk_key)
                    running[fetch] = replica
            if not running:
                return good, checks
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fetch in done:
                replica = running.pop(fetch)
                check, fragment = fetch.result()
                checks.append(check)
                if fragment is not None:
                    good.setdefault(replica.fragment, fragment)
            if len(good) >= record.needed:
                for fetch in running:  # more than K started (a repeated index): not awaited
                    fetch.cancel()
                return good, checks

    def _read_fragments(self, record: ChunkRecord) -> tuple[bytes, list[ReplicaCheck]]:
        """The chunk rebuilt from the first K good fragments, held to its address."""
        _, data, checks = self._rebuild(record)
        return data, checks

    def rebuild_fragments(
        self, record: ChunkRecord, missing: Sequence[int]
    ) -> tuple[dict[int, bytes], list[ReplicaCheck]]:
        """The fragments at the ``missing`` indexes made anew from K good ones, once the
        chunk they rebuild has been held to its address (repair writes only what reads
        would accept)."""
        frame, _, checks = self._rebuild(record)
        fresh = erasure.encode(frame, record.needed, record.wanted - record.needed)
        return {index: fresh[index] for index in missing}, checks

    def _read_fragment_batch(
        self, records: Sequence[ChunkRecord]
    ) -> Iterator[tuple[ChunkRecord, bytes, list[ReplicaCheck]]]:
        """Erasure-coded chunks read together (``_gather_fragments``), each rebuilt and held
        to its address; a chunk short of K good fragments there goes through ``read``."""
        good, found = self._gather_fragments(records, {})
        for record in records:
            checks = found.get(record.chunk_id, [])
            fragments = good.pop(record.chunk_id, {})
            if len(fragments) >= record.needed:
                try:
                    yield record, self._decode(record, fragments)[1], checks
                    continue
                except IntegrityError:
                    pass  # every copy again, with failover, below
            again, more = self.read(record)
            yield record, again, [c for c in checks if c.state != GOOD] + more

    def rebuild_many(
        self, wanted: Sequence[tuple[ChunkRecord, Sequence[int], Collection[str]]]
    ) -> dict[bytes, dict[int, bytes] | MetanodeError]:
        """For each (erasure-coded chunk, missing fragment indexes, providers not to read
        from): the missing fragments made anew, or why they could not be. The good
        fragments are gathered pack by pack for all of them at once; a chunk short of K
        there is rebuilt on its own (``rebuild_fragments``, every copy with failover)."""
        avoid = {record.chunk_id: set(skip) for record, _, skip in wanted}
        good, _ = self._gather_fragments([record for record, _, _ in wanted], avoid)
        made: dict[bytes, dict[int, bytes] | MetanodeError] = {}
        for record, missing, _ in wanted:
            fragments = good.pop(record.chunk_id, {})
            if len(fragments) >= record.needed:
                try:
                    frame, _ = self._decode(record, fragments)
                    fresh = erasure.encode(frame, record.needed, record.wanted - record.needed)
                    made[record.chunk_id] = {index: fresh[index] for index in missing}
                    continue
                except IntegrityError:
                    pass  # every copy again, with failover, below
            try:
                made[record.chunk_id] = self.rebuild_fragments(record, missing)[0]
            except MetanodeError as exc:
                made[record.chunk_id] = exc
        return made

    def _gather_fragments(
        self, records: Sequence[ChunkRecord], avoid: Mapping[bytes, Collection[str]]
    ) -> tuple[dict[bytes, dict[int, bytes]], dict[bytes, list[ReplicaCheck]]]:
        """K verified fragments of each erasure-coded chunk (fewer where they could not be
        had), fetched pack by pack, and what was found on the way. Each chunk's K come
        from the providers first in one order for the whole batch (Offline ones last,
        those in ``avoid`` for the chunk never), so chunks written together share packs
        and requests; all the batch's requests run at once."""
        rank = batch_rank(self._providers)
        by_pack: dict[tuple[str, str], list[tuple[Replica | None, ChunkRecord]]] = {}
        for record in records:
            skip = avoid.get(record.chunk_id, ())
            usable = sorted(
                (
                    r
                    for r in record.replicas
                    if r.provider in rank and r.in_pack and r.provider not in skip
                ),
                key=lambda r: (self._is_offline(r.provider), rank[r.provider]),
            )
            chosen: dict[int, Replica] = {}
            for replica in usable:
                chosen.setdefault(replica.fragment, replica)
            for replica in list(chosen.values())[: record.needed]:
                by_pack.setdefault((replica.provider, replica.key), []).append((replica, record))
        pool = self._pool()
        fetches = []
        for members in by_pack.values():
            members.sort(key=lambda item: item[0].offset if item[0] else 0)
            fetches += [pool.submit(self._fetch_span, span) for span in spans(members)]
        good: dict[bytes, dict[int, bytes]] = {}
        found: dict[bytes, list[ReplicaCheck]] = {}
        for fetch in fetches:
            for replica, record, check, fragment in fetch.result():
                found.setdefault(record.chunk_id, []).append(check)
                if fragment is not None:
                    good.setdefault(record.chunk_id, {})[replica.fragment] = fragment
        return good, found

    def _fetch_span(
        self, span: list[tuple[Replica | None, ChunkRecord]], caller_hashes: bool = False
    ) -> list[tuple[Replica, ChunkRecord, ReplicaCheck, bytes | None]]:
        """One request for a run of pieces in one pack; each piece checked alone (the
        plaintext of a replica, the fragment itself of a fragment, or None and why)."""
        first, last = span[0][0], span[-1][0]
        assert first is not None and last is not None
        members = [(r, record) for r, record in span if r is not None]
        try:
            blob = self._providers[first.provider].get_range(
                first.key, first.offset, last.offset + last.size
            )
        except ProviderError as exc:
            failed = _failure(first.provider, exc)
            return [(r, record, failed, None) for r, record in members]
        checked = []
        for replica, record in members:
            at = replica.offset - first.offset
            piece = blob[at : at + replica.size]
            check, opened = self._verify(
                record, replica, piece, self.chunk_key(record), caller_hashes
            )
            checked.append((replica, record, check, opened))
        return checked

    def _pool(self) -> ThreadPoolExecutor:
        if self._fragment_pool is None:
            self._fragment_pool = ThreadPoolExecutor(8, thread_name_prefix="metanode-fragment")
        return self._fragment_pool

    def _rebuild(self, record: ChunkRecord) -> tuple[bytes, bytes, list[ReplicaCheck]]:
        """(frame, plaintext, checks) from K good fragments; raises as ``read`` does."""
        good, checks = self.good_fragments(record)
        if len(good) < record.needed:
            raise _unreadable(record, checks)
        frame, data = self._decode(record, good)
        return frame, data, checks

    def _decode(self, record: ChunkRecord, good: Mapping[int, bytes]) -> tuple[bytes, bytes]:
        """(frame, plaintext) from K verified fragments, held to the chunk's address."""
        label = record.chunk_id.hex()[:12]
        try:
            frame = erasure.decode(good, record.needed, record.wanted - record.needed)
            data = blobformat.read_frame(frame, record.plain_size)
        except (erasure.FragmentsInvalid, blobformat.BlobInvalid) as exc:
            raise IntegrityError(
                f"the fragments of chunk {label} do not rebuild it: {exc}",
                "run `metanode storage verify --all` and `repair`",
            ) from None
        if len(data) != record.plain_size or not hmac.compare_digest(
            aead.keyed_hash(self._dedup_key, data), record.chunk_id
        ):
            raise IntegrityError(
                f"chunk {label} rebuilt from its fragments does not match its address",
                "run `metanode storage verify --all` and `repair`",
            )
        return frame, data


def _unreadable(record: ChunkRecord, checks: list[ReplicaCheck]) -> MetanodeError:
    """Why no good copy of the chunk could be had: an outage, or lost data."""
    label = record.chunk_id.hex()[:12]
    details = "; ".join(f"{c.provider}: {c.state} ({c.detail})" for c in checks)
    if record.is_erasure_coded:
        what, lost = f"{record.needed} fragments", "too many fragments"
    else:
        what, lost = "replica", "every replica"
    if any(c.state == UNREACHABLE for c in checks):
        return ProviderUnavailable(
            ",".join(c.provider for c in checks if c.state == UNREACHABLE),
            f"no good {what} of chunk {label} could be read: {details}",
            "bring the provider back; the other copies are missing or corrupt",
        )
    return IntegrityError(
        f"{lost} of chunk {label} are missing or corrupt: {details}",
        "the data cannot be recovered from this node's providers",
    )
