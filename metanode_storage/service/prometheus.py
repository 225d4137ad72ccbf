"""The /metrics exposition, through prometheus-client (exact values, HELP and TYPE lines).

The figures are the node's persisted, measured counters (engine/metrics.py)
and the block map's totals at the moment of the scrape; a registry is built
per scrape, since the counters live in SQLite rather than in this process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from metanode_storage.blockmap.totals import MapStats
from metanode_storage.engine.metrics import MetricsSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_COUNTER_HELP = {
    "store_ops": "Blocks stored",
    "store_bytes": "Bytes stored (logical, before dedup and compression)",
    "store_seconds": "Seconds spent storing",
    "retrieve_ops": "Blocks retrieved and verified",
    "retrieve_bytes": "Bytes retrieved",
    "retrieve_seconds": "Seconds spent retrieving",
    "proofs": "Block proofs generated",
    "proof_seconds": "Seconds spent generating proofs",
    "failovers": "Chunk reads served by another replica after one failed",
    "repairs": "Chunks repaired",
    "housekeeping_failures": "Map backups or checkpoint publications that failed (retried)",
}
_GAUGE_HELP = {
    "blocks": "Blocks in the map",
    "logical_bytes": "Bytes of stored data, as stored by users",
    "replicas": "Chunk replicas held on providers",
    "faulty_replicas": "Replicas last found missing or corrupt",
    "short_chunks": "Chunks with fewer replicas than their replication factor",
    "stored_bytes": "Bytes held on providers: every replica or fragment",
    "unique_bytes": "Bytes of distinct chunks (after dedup, before compression)",
    "copy_bytes": "Provider bytes of one sealed copy of each chunk (after compression)",
}


class _Snapshot(Collector):
    def __init__(self, snapshot: MetricsSnapshot, stats: MapStats) -> None:
        self._snapshot = snapshot
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        for name, help_text in _COUNTER_HELP.items():
            # prometheus-client appends _total to counter names
            yield CounterMetricFamily(
                f"metanode_{name}", help_text, value=self._snapshot.counters[name]
            )
        yield GaugeMetricFamily(
            "metanode_failovers_24h",
            "Failovers in the last 24 hours",
            value=self._snapshot.failovers_24h,
        )
        for name, help_text in _GAUGE_HELP.items():
            yield GaugeMetricFamily(f"metanode_{name}", help_text, value=getattr(self._stats, name))
        if self._stats.least_margin is not None:
            yield GaugeMetricFamily(
                "metanode_least_redundancy_margin",
                "Provider losses every chunk survives as stored (faults and outages aside)",
                value=self._stats.least_margin,
            )


def exposition(snapshot: MetricsSnapshot, stats: MapStats) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snapshot, stats))
    return generate_latest(registry)
