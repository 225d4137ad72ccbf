"""The node's status, measured now: provider reachability and latency, map totals."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from metanode_storage.blockmap.store import BlockMap
from metanode_storage.blockmap.totals import MapStats
from metanode_storage.config.settings import NodeSettings
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.errors import ProviderError
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.health import ACTIVE, DEGRADED, OFFLINE, HealthBoard

if TYPE_CHECKING:
    from metanode_storage.engine.backup_log import BackupState


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    vendor: str
    region: str
    state: str  # Active, Degraded or Offline, after a reachability check made just now
    latency_ms: float | None  # how long that check took; None when not probed
    average_latency_ms: float | None  # moving average over this node's recent operations
    error: str = ""


@dataclass(frozen=True)
class MapBackupStatus:
    enabled: bool
    current: list[str]  # providers whose map backup log is up to the last backup
    last_written_at: float | None
    last_failure: str  # why the last backup reached fewer than two providers ("" if it did)
    last_failure_at: float | None
    # when the least recently checked of those providers was found to hold its whole
    # backup; None while one has not been checked since its backup was written (and from
    # a service too old to say)
    last_checked_at: float | None = None

    @classmethod
    def of(cls, state: BackupState, enabled: bool) -> MapBackupStatus:
        """From what each provider's log holds, as the node last wrote or checked it."""
        written = [log.written_at for log in state.logs.values()]
        checked = [log.checked_at for log in state.logs.values()]
        return cls(
            enabled=enabled,
            current=sorted(state.logs),
            last_written_at=max(written) if written else None,
            last_checked_at=min(checked) if checked and all(checked) else None,
            last_failure=state.last_failure,
            last_failure_at=state.last_failure_at or None,
        )


@dataclass(frozen=True)
class Protection:
    """TLSLS: what protects this node against a quantum adversary, and what does not
    (docs/TLSLS.md), as the keys in force say."""

    signatures: str
    key_encapsulation: str
    transport: str

    @classmethod
    def of(cls, signer: NodeSigner, recovery_recipients: int) -> Protection:
        return cls(
            "ML-DSA-65 + Ed25519 signatures"
            if signer.hybrid
            else "Ed25519 signatures only (not post-quantum; `keys rotate --pq` upgrades)",
            f"X-Wing (ML-KEM-768 + X25519) escrow to {recovery_recipients} recovery recipient(s)"
            if recovery_recipients
            else "none in use (no recovery recipient: `keys escrow --to`)",
            "service TLS 1.3 with --tls-cert (X25519); remote client bodies X-Wing-sealed",
        )

    def line(self) -> str:
        return (
            f"{self.signatures}; key encapsulation: {self.key_encapsulation}; "
            f"transport: {self.transport}"
        )


@dataclass(frozen=True)
class NodeStatus:
    state: str  # Active: all providers answer; Degraded: some do not; Offline: none do
    node_id: str
    map: str  # where the block map is: "home" (SQLite), or the shared database's URL
    replication_factor: int
    redundancy: str  # how new chunks are protected: replicas:N or ec:K+M
    # Further provider losses every chunk survives right now (the least over chunks: its
    # good pieces on providers that answer, less those it needs); negative when some
    # chunk cannot be read now; None with nothing stored.
    survivable_losses: int | None
    providers: list[ProviderStatus]
    blocks: int
    logical_bytes: int
    stored_bytes: int
    chunks: int
    replicas: int
    short_chunks: int
    faulty_replicas: int
    # The integrity figure is the last known state, not measured by `status` itself:
    blocks_never_checked: int  # blocks no integrity audit has read yet
    oldest_check_at: int | None  # when the least recently checked block was checked
    map_backup: MapBackupStatus
    tlsls: Protection
    # replicas on providers that did not answer now: not known bad, but out of reach
    # (0 from a service too old to say)
    unreachable_replicas: int = 0

    @property
    def active_providers(self) -> int:
        """Providers that answered the probe (Active or Degraded)."""
        return sum(p.state != OFFLINE for p in self.providers)

    @property
    def healthy_replicas(self) -> int:
        return self.replicas - self.faulty_replicas

    @property
    def data_integrity_percent(self) -> float | None:
        """Share of replicas not known to be missing or corrupt; None with nothing stored."""
        return 100.0 * self.healthy_replicas / self.replicas if self.replicas else None

    @property
    def average_latency_ms(self) -> float | None:
        active = [p.latency_ms for p in self.providers if p.state == ACTIVE and p.latency_ms]
        return sum(active) / len(active) if active else None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> NodeStatus:
        """Back from ``to_dict`` (what the service sends a remote client); the derived
        figures are derived again."""
        fields = {name: doc[name] for name in cls.__dataclass_fields__ if name != "map"}
        fields["map"] = doc.get("map", "home")  # a service older than shared maps
        fields["providers"] = [ProviderStatus(**p) for p in doc["providers"]]
        fields["map_backup"] = MapBackupStatus(**doc["map_backup"])
        fields["tlsls"] = Protection(**doc["tlsls"])
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(
            active_providers=self.active_providers,
            healthy_replicas=self.healthy_replicas,
            data_integrity_percent=self.data_integrity_percent,
            average_latency_ms=self.average_latency_ms,
        )
        return doc


@dataclass(frozen=True)
class Exposure:
    """What the providers that do not answer now take away."""

    survivable_losses: int | None  # see NodeStatus
    unreachable_replicas: int  # replicas (or fragments) on those providers


def exposure(blockmap: BlockMap, stats: MapStats, unavailable: Collection[str]) -> Exposure:
    """Further provider losses every chunk survives now, and the replicas out of reach.
    The map's totals answer while no copy is known bad and every provider answers;
    otherwise each chunk is looked at."""
    if not stats.chunks:
        return Exposure(None, 0)
    if not stats.faulty_replicas and not unavailable:
        return Exposure(stats.least_margin, 0)
    bad = {(chunk_id, provider) for chunk_id, provider, _ in blockmap.faults()}
    least: int | None = None
    unreachable = 0
    for record in blockmap.chunks():
        good = [
            r
            for r in record.replicas
            if r.provider not in unavailable and (record.chunk_id, r.provider) not in bad
        ]
        unreachable += sum(r.provider in unavailable for r in record.replicas)
        pieces = len({r.fragment for r in good}) if record.is_erasure_coded else len(good)
        margin = pieces - record.needed
        least = margin if least is None else min(least, margin)
    return Exposure(least, unreachable)


def _probe(store: BlobStore) -> tuple[float | None, str]:
    started = time.perf_counter()
    try:
        store.check_reachable()
    except ProviderError as exc:
        return (time.perf_counter() - started) * 1000, exc.message
    return (time.perf_counter() - started) * 1000, ""


def measure_status(
    settings: NodeSettings,
    providers: Mapping[str, BlobStore],
    health: HealthBoard,
    probe_offline: bool,
    stats: MapStats,
    coverage: tuple[int, int | None],
    map_backup: MapBackupStatus,
    protection: Protection,
    exposed: Callable[[Collection[str]], Exposure],
) -> NodeStatus:
    """Probe every provider now (in parallel); the probes also update the health board.

    A provider known Offline within the health board's retry window is not probed:
    a provider that is down costs nothing once it is known down (a hung one would
    cost a full timeout per probe). It is probed again once the window has passed.
    ``exposed`` tells what the providers that did not answer take away.
    """
    probed = {n: s for n, s in providers.items() if probe_offline or not health.is_offline(n)}
    with ThreadPoolExecutor(max(1, len(probed))) as pool:
        probes = dict(zip(probed, pool.map(_probe, probed.values()), strict=True))
    for name in providers:
        if name not in probed:
            probes[name] = (None, f"not probed: known Offline ({health.get(name).last_error})")
    rows = []
    for p in settings.providers:
        latency, error = probes[p.name]
        board = health.get(p.name)
        state = OFFLINE if error and board.state == OFFLINE else board.state
        rows.append(
            ProviderStatus(
                p.name,
                p.vendor,
                p.region,
                state,
                latency,
                board.latency_ms,
                error or (board.last_error if state == DEGRADED else ""),
            )
        )
    active = sum(r.state == ACTIVE for r in rows)
    reachable = sum(r.state != OFFLINE for r in rows)
    state = ACTIVE if active == len(rows) else (OFFLINE if reachable == 0 else DEGRADED)
    exposure_now = exposed({r.name for r in rows if r.state == OFFLINE})
    return NodeStatus(
        state=state,
        node_id=settings.node_id,
        map=settings.map_url or "home",
        replication_factor=settings.replication_factor,
        redundancy=settings.scheme.text(),
        survivable_losses=exposure_now.survivable_losses,
        providers=rows,
        blocks=stats.blocks,
        logical_bytes=stats.logical_bytes,
        stored_bytes=stats.stored_bytes,
        chunks=stats.chunks,
        replicas=stats.replicas,
        short_chunks=stats.short_chunks,
        faulty_replicas=stats.faulty_replicas,
        blocks_never_checked=coverage[0],
        oldest_check_at=coverage[1],
        map_backup=map_backup,
        tlsls=protection,
        unreachable_replicas=exposure_now.unreachable_replicas,
    )
