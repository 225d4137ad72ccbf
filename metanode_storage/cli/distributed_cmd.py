"""`metanode storage distributed ...`: set up a node and see its state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metanode_storage.cli import audit_cmd, console, formatting, remote
from metanode_storage.cli.options import (
    HomeOption,
    JsonOption,
    local_home,
    open_node,
    parse_bool,
    read_passphrase,
)
from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.settings import LOCAL_VENDOR, NodeSettings, load_settings
from metanode_storage.errors import InvalidSetting
from metanode_storage.redundancy import Redundancy

if TYPE_CHECKING:
    from metanode_storage.engine.metrics import StorageEfficiency
    from metanode_storage.engine.status import NodeStatus


app = typer.Typer(rich_markup_mode=None, help="Set up the node and watch it.", no_args_is_help=True)


MapOption = Annotated[
    str,
    typer.Option(
        "--map",
        metavar="postgresql://USER@HOST[:PORT]/DB",
        help="Keep the block map, audit trail and locks in this PostgreSQL database, shared "
        "by every host that joins (`distributed join`). Password from PGPASSWORD or "
        "~/.pgpass, never in the URL. Default: SQLite in the home.",
    ),
]


@app.command()
def init(
    home: HomeOption = None,
    providers: Annotated[
        str,
        typer.Option(
            "--providers",
            help="Comma-separated vendors (aws,gcp,azure,digitalocean,linode,vultr,hetzner,"
            "ovh,cloudflare,local). Default: three local providers, no cloud account.",
        ),
    ] = "",
    replication_factor: Annotated[int, typer.Option(min=1, max=5)] = 3,
    redundancy: Annotated[
        str,
        typer.Option(
            "--redundancy",
            metavar="replicas:N|ec:K+M",
            help="How each chunk is protected: N full replicas, or K data + M parity "
            "Reed-Solomon fragments on K+M providers (ec:3+2 survives two lost providers "
            "at 1.67x the bytes). Default: --replication-factor replicas.",
        ),
    ] = "",
    max_providers: Annotated[int, typer.Option(min=1, max=5)] = 5,
    encryption: Annotated[str, typer.Option(metavar="true|false")] = "true",
    compression: Annotated[str, typer.Option(metavar="true|false")] = "true",
    backup_enabled: Annotated[str, typer.Option(metavar="true|false")] = "true",
    audit_enabled: Annotated[str, typer.Option(metavar="true|false")] = "true",
    allow_under_replication: Annotated[
        bool,
        typer.Option(
            "--allow-under-replication",
            help="Store with fewer replicas when too few providers answer (default: fail).",
        ),
    ] = False,
    map_url: MapOption = "",
    json_output: JsonOption = False,
) -> None:
    """Create a node: keystore, encrypted block map and providers."""
    from metanode_storage.engine.setup import (
        cloud_provider_defaults,
        default_local_providers,
        init_node,
    )

    vendors = [v.strip().lower() for v in providers.split(",") if v.strip()]
    layout = NodeLayout(local_home(home))
    chosen = (
        *default_local_providers(layout, vendors.count(LOCAL_VENDOR)),
        *cloud_provider_defaults([v for v in vendors if v != LOCAL_VENDOR]),
    )
    encrypt = parse_bool(encryption)
    scheme = Redundancy.parse(redundancy) if redundancy else None
    settings = init_node(
        layout.home,
        read_passphrase(confirm=True),
        providers=chosen,
        replication_factor=replication_factor,
        redundancy=scheme,
        max_cloud_providers=max_providers,
        encryption=encrypt,
        compression=parse_bool(compression),
        backup_enabled=parse_bool(backup_enabled),
        audit_enabled=parse_bool(audit_enabled),
        allow_under_replication=allow_under_replication,
        map_url=map_url,
    )
    _show_node(layout, settings, json_output)
    if not encrypt and not json_output:
        console.note(
            "warning: encryption is off: providers will see your data (still authenticated)"
        )


@app.command()
def join(
    map_url: Annotated[
        str,
        typer.Option(
            "--map",
            metavar="postgresql://USER@HOST[:PORT]/DB",
            help="The shared map database of the node to join (password from PGPASSWORD "
            "or ~/.pgpass).",
        ),
    ],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make this machine another host of a node whose map is in PostgreSQL: the
    keystore and config come from the database, opened with the node's passphrase.
    Every host stores into the same providers and sees every block."""
    from metanode_storage.engine.setup import join_node

    layout = NodeLayout(local_home(home))
    settings = join_node(layout.home, map_url, read_passphrase())
    _show_node(layout, settings, json_output)


def _show_node(layout: NodeLayout, settings: NodeSettings, json_output: bool) -> None:
    if json_output:
        console.emit_json(
            {
                "home": str(layout.home),
                "node_id": settings.node_id,
                "providers": [p.name for p in settings.providers],
                "replication_factor": settings.replication_factor,
                "redundancy": settings.scheme.text(),
                "map": settings.map_url or "home",
            }
        )
        return
    console.key_values(
        [
            ("Node", settings.node_id),
            ("Home", str(layout.home)),
            ("Map", settings.map_url or "in the home (SQLite)"),
            ("Providers", ", ".join(p.name for p in settings.providers)),
            ("Redundancy", formatting.redundancy(settings.scheme)),
        ]
    )


@app.command("redundancy")
def redundancy_command(
    scheme: Annotated[
        str,
        typer.Argument(
            metavar="[replicas:N|ec:K+M]",
            help="The redundancy for chunks stored from now on; omit it to show the current.",
        ),
    ] = "",
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show or change how new chunks are protected. Chunks already stored keep their
    redundancy until `metanode storage repair --rewrite` moves them to the new one."""
    from metanode_storage.engine.setup import change_redundancy

    layout = NodeLayout(local_home(home))
    if scheme:
        settings = change_redundancy(layout.home, Redundancy.parse(scheme))
    else:
        settings = load_settings(layout.config)
    if json_output:
        chosen = settings.scheme
        console.emit_json(
            {
                "redundancy": chosen.text(),
                "pieces": chosen.pieces,
                "needed": chosen.needed,
                "tolerates_lost_providers": chosen.tolerates,
                "changed": bool(scheme),
            }
        )
        return
    console.key_values([("Redundancy", formatting.redundancy(settings.scheme))])
    if scheme:
        console.note(
            "new chunks use it; run `metanode storage repair --rewrite` to move stored ones"
        )


@app.command()
def status(
    home: HomeOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Measure everything now: verify every replica, probe Offline providers too.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Providers reachable and blocks, measured now; replica integrity as last known
    (from integrity audits, verify and get), or measured now with --check."""
    from metanode_storage.engine.integrity import run_integrity_audit
    from metanode_storage.engine.status import NodeStatus

    through = remote.service()
    if through is not None:
        if check:
            raise InvalidSetting("--check is not available through --remote")
        report = NodeStatus.from_dict(through.status())
    else:
        with open_node(home, read_only=not check) as node:
            if check:
                with console.count_progress("checking blocks", node.map_stats().blocks) as bar:
                    run_integrity_audit(node, progress=bar.advance)
            report = node.status(probe_offline=check)
    if json_output:
        console.emit_json(report.to_dict())
        return
    console.key_values(
        [
            ("Distributed Storage Status", report.state),
            ("Active Providers", f"{report.active_providers}/{len(report.providers)}"),
            ("Total Blocks", f"{report.blocks:,}"),
            (
                "Data Integrity",
                f"{formatting.percent(report.data_integrity_percent)} ({_integrity_age(report)})",
            ),
            ("Average Latency", formatting.millis(report.average_latency_ms)),
            ("Redundancy", _redundancy_line(report)),
            ("Replicas Healthy", _replicas_line(report)),
            ("Under-replicated Chunks", f"{report.short_chunks:,}"),
            (
                "Stored Data",
                f"{formatting.size(report.logical_bytes)} "
                f"({formatting.size(report.stored_bytes)} on providers)",
            ),
        ]
    )
    console.key_values(
        [
            ("Block Map", "in the home (SQLite)" if report.map == "home" else report.map),
            ("Map Backup", _map_backup_line(report)),
            ("TLSLS", report.tlsls.line()),
        ]
    )
    console.table(
        "Providers",
        ["name", "vendor", "region", "state", "latency", "problem"],
        [
            [p.name, p.vendor, p.region, p.state, formatting.millis(p.latency_ms), p.error]
            for p in report.providers
        ],
    )


def _replicas_line(report: NodeStatus) -> str:
    line = f"{report.healthy_replicas:,}/{report.replicas:,}"
    if report.unreachable_replicas:
        line += f" ({report.unreachable_replicas:,} on Offline providers: out of reach now)"
    return line


def _redundancy_line(report: NodeStatus) -> str:
    """The scheme for new chunks, and the further provider losses every block survives."""
    losses = report.survivable_losses
    if losses is None:
        now = "nothing stored yet"
    elif losses < 0:
        now = "some blocks cannot be read now: run `metanode storage repair`"
    else:
        now = f"every block survives {losses} more lost provider{'' if losses == 1 else 's'} now"
    return f"{report.redundancy} ({now})"


def _map_backup_line(report: NodeStatus) -> str:
    backup = report.map_backup
    if not backup.enabled:
        return "off (init --backup-enabled false): losing this machine loses the map"
    line = f"current on {len(backup.current)}/{len(report.providers)} providers"
    if backup.last_written_at:
        line += f", written {formatting.ago(int(backup.last_written_at))}"
    if backup.current:
        line += (
            f", checked {formatting.ago(int(backup.last_checked_at))}"
            if backup.last_checked_at
            else ", not yet checked on every provider (`repair` or `audit --integrity` does)"
        )
    if backup.last_failure and backup.last_failure_at:
        line += (
            f"; LAST BACKUP FAILED {formatting.ago(int(backup.last_failure_at))}: "
            f"{backup.last_failure} (retried after the next change, or run `backup-map`)"
        )
    return line


def _integrity_age(report: NodeStatus) -> str:
    if report.blocks == 0:
        return "nothing to check"
    parts = []
    if report.oldest_check_at is not None:
        parts.append(f"oldest block check {formatting.ago(report.oldest_check_at)}")
    if report.blocks_never_checked:
        parts.append(f"{report.blocks_never_checked:,} block(s) never checked")
    return "as last known: " + "; ".join(parts) + "; `status --check` measures now"


@app.command()
def audit(
    home: HomeOption = None,
    integrity: Annotated[
        bool,
        typer.Option(
            "--integrity", help="Check replicas and map backups on every provider (for cron)."
        ),
    ] = False,
    sample: Annotated[
        int | None,
        typer.Option(min=1, help="With --integrity: N blocks, least recently audited first."),
    ] = None,
    all_blocks: Annotated[
        bool, typer.Option("--all", help="With --integrity: every block (the default).")
    ] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="With --integrity: sizes only, no download.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """The audit summary from the trail; with --integrity, an integrity audit.

    Integrity exit codes: 0 clean, 10 integrity violations, 6 unreachable providers.
    """
    if not integrity:
        if sample is not None or all_blocks or quick:
            raise InvalidSetting("--sample, --all and --quick go with --integrity")
        audit_cmd.summary(home, json_output)
        return
    if sample is not None and all_blocks:
        raise InvalidSetting("give --sample N or --all, not both")
    audit_cmd.integrity(home, sample, quick, json_output)


def _throughput(ops: float | None, megabytes: float | None, unit: str) -> str:
    if ops is None:
        return "not measured yet (none done)"
    return f"{ops:,.1f} {unit}/sec ({megabytes or 0:,.1f} MB/s)"


@app.command()
def metrics(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Throughputs measured over every operation so far, and failovers in the last 24 h."""
    from metanode_storage.engine.metrics import StorageEfficiency

    with open_node(home, read_only=True) as node:
        snapshot = node.metrics.snapshot()
        storage = StorageEfficiency.of(node.map_stats())
        scheme = node.settings.scheme
    if json_output:
        console.emit_json({**snapshot.to_dict(), "storage": storage.to_dict()})
        return
    proofs = snapshot.proofs_per_second
    console.key_values(
        [
            (
                "Storage Throughput",
                _throughput(snapshot.storage_ops_per_second, snapshot.storage_mb_per_second, "ops"),
            ),
            (
                "Retrieval Throughput",
                _throughput(
                    snapshot.retrieval_ops_per_second, snapshot.retrieval_mb_per_second, "ops"
                ),
            ),
            (
                "Proof Generation",
                "not measured yet (no proofs)" if proofs is None else f"{proofs:,.0f} proofs/sec",
            ),
            ("Multi-Cloud Failover", f"{snapshot.failovers_24h:,} failovers (24h)"),
            *_efficiency_lines(storage, scheme),
        ]
    )


def _efficiency_lines(storage: StorageEfficiency, scheme: Redundancy) -> list[tuple[str, str]]:
    size, ratio = formatting.size, formatting.ratio
    return [
        (
            "Stored vs Logical",
            f"{size(storage.stored_bytes)} on providers for {size(storage.logical_bytes)} "
            f"stored ({ratio(storage.stored_per_logical)})",
        ),
        (
            "Dedup Savings",
            f"{size(storage.dedup_saved_bytes)} "
            f"({size(storage.logical_bytes)} -> {size(storage.unique_bytes)} unique)",
        ),
        (
            "Compression",
            f"{ratio(storage.compression_ratio)} ({size(storage.unique_bytes)} -> "
            f"{size(storage.copy_bytes)} per copy, padding and seals included)",
        ),
        (
            "Redundancy Overhead",
            f"{ratio(storage.redundancy_overhead)} (new chunks: {scheme.text()})",
        ),
    ]
