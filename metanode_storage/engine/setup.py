"""Creating a node home: keystore, block map, provider directories, config."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

from metanode_storage.audit.trail import AuditTrail, audit_origin
from metanode_storage.blockmap.store import BlockMap
from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import (
    LOCAL_VENDOR,
    LOCATION_FIELDS,
    NodeSettings,
    ProviderSettings,
    load_settings,
    save_settings,
)
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.crypto.keystore import KeyMaterial, read_keystore, write_keystore
from metanode_storage.database import (
    MAP_SCHEMA,
    TRAIL_SCHEMA,
    DatabaseMissing,
    DatabaseUrl,
    open_database,
)
from metanode_storage.engine.backup import derive_locator
from metanode_storage.engine.qlock import holding_blocks_lock
from metanode_storage.engine.shared_home import CONFIG, KEYSTORE, SharedFiles, sync_home
from metanode_storage.errors import (
    AlreadyInitialised,
    ConfigError,
    InvalidSetting,
    NotInitialised,
)
from metanode_storage.providers.catalogue import vendor_named
from metanode_storage.redundancy import Redundancy

DEFAULT_LOCAL_PROVIDERS = 3


def default_local_providers(layout: NodeLayout, count: int) -> tuple[ProviderSettings, ...]:
    """The embedded default: ``count`` local providers in separate directories."""
    return tuple(
        ProviderSettings(
            name=f"local-{i}",
            vendor=LOCAL_VENDOR,
            path=str(layout.local_providers / f"local-{i}"),
            region="local",
        )
        for i in range(1, count + 1)
    )


def node_bucket_name(node_id: str) -> str:
    """The default bucket of a node's cloud providers: unique, and saying nothing of its data."""
    return f"metanode-{node_id.replace('-', '')[:16]}"


def cloud_provider_defaults(vendors: Sequence[str]) -> tuple[ProviderSettings, ...]:
    """Providers for the seed's `init --providers aws,gcp,...`: each vendor's default region,
    named after the vendor (with -2, -3 for repeats), bucket chosen at init."""
    chosen: list[ProviderSettings] = []
    for vendor in vendors:
        count = sum(p.vendor == vendor for p in chosen)
        name = vendor if count == 0 else f"{vendor}-{count + 1}"
        chosen.append(ProviderSettings(name, vendor, region=vendor_named(vendor).default_region))
    return tuple(chosen)


def init_node(
    home: Path,
    passphrase: Secret,
    *,
    providers: Sequence[ProviderSettings] = (),
    replication_factor: int = 3,
    redundancy: Redundancy | None = None,
    max_cloud_providers: int = 5,
    encryption: bool = True,
    compression: bool = True,
    backup_enabled: bool = True,
    audit_enabled: bool = True,
    allow_under_replication: bool = False,
    kdf: KdfParams | None = None,
    credentials: Mapping[str, Mapping[str, Secret]] | None = None,
    map_url: str = "",
) -> NodeSettings:
    """Create a node. With no providers, sets up the embedded local default.

    ``credentials`` are sealed into the keystore, by provider name, for
    providers whose ``credentials`` source is "keystore". ``redundancy``, when given,
    takes the place of ``replication_factor``.

    The config is written last: a node home counts as initialised only once
    every other file is in place, so an interrupted init can simply be rerun.
    """
    layout = NodeLayout(home)
    if layout.config.exists():
        raise AlreadyInitialised(
            f"a node already exists at {home}", "use it, or choose another --home"
        )
    _refuse_a_node_that_lost_its_config(layout)
    node_id = str(uuid.uuid4())
    scheme = redundancy or Redundancy.replicas(replication_factor)
    chosen = tuple(
        p if p.is_local or p.bucket else replace(p, bucket=node_bucket_name(node_id))
        for p in providers
    ) or default_local_providers(layout, max(DEFAULT_LOCAL_PROVIDERS, scheme.pieces))
    settings = NodeSettings(
        node_id=node_id,
        replication_factor=replication_factor if scheme.is_erasure_coded else scheme.pieces,
        redundancy=scheme.text() if scheme.is_erasure_coded else "",
        max_cloud_providers=max_cloud_providers,
        encryption=encryption,
        compression=compression,
        backup_enabled=backup_enabled,
        audit_enabled=audit_enabled,
        allow_under_replication=allow_under_replication,
        map_url=map_url,
        providers=chosen,
    )
    settings.validate()
    if map_url:
        _refuse_a_database_in_use(DatabaseUrl(map_url))
    if len(passphrase.reveal()) < 8:
        raise InvalidSetting("the passphrase is shorter than 8 characters", "choose a longer one")
    with _making(home):
        for provider in chosen:
            if provider.vendor == LOCAL_VENDOR:
                Path(provider.path).mkdir(parents=True, exist_ok=True, mode=0o700)
        material = KeyMaterial.generate()
        material.provider_credentials = {n: dict(c) for n, c in (credentials or {}).items()}
        if backup_enabled:  # derived now (Argon2id each), so the first store need not
            material.backup_locators = {
                p.name: Secret(derive_locator(passphrase, p.name).to_hex().encode()) for p in chosen
            }
        write_keystore(layout.keystore, material, passphrase, kdf or KdfParams.fresh())
        for leftover in (layout.blockmap, layout.audit):
            if leftover.exists() and not map_url:
                leftover.unlink()  # left by an interrupted init; it cannot hold data
        BlockMap(layout.map_at(map_url), material.map_key.reveal(), create=True).close()
        AuditTrail(layout.trail_at(map_url), audit_origin(node_id), create=True).close()
        save_settings(layout.config, settings)
        os.chmod(layout.config, 0o600)
        if map_url:  # what `join` gives the node's next hosts
            with closing(SharedFiles(DatabaseUrl(map_url), material.map_key.reveal())) as files:
                sync_home(layout, files)
    return settings


@contextmanager
def _making(home: Path) -> Iterator[None]:
    """Make ``home`` and the node's files in it; a disk error is the user's to fix."""
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        yield
    except OSError as exc:
        raise ConfigError(
            f"cannot create the node at {home}: {exc.strerror}",
            "check the path and its permissions",
        ) from None


def _refuse_a_node_that_lost_its_config(layout: NodeLayout) -> None:
    """A home without config.toml is an interrupted init (rerun it: what it left holds
    nothing) or a node whose config was lost, which an init would replace with a new,
    empty node, its keystore first. Blocks in the map, events in the trail or blobs in
    the home's providers say which; the counts need no key."""
    held = [
        f"{count:,} {what}"
        for count, what in (
            (_rows(layout.blockmap, "blocks"), "block(s) in its map"),
            (_rows(layout.audit, "events"), "audit event(s)"),
            (sum(p.is_file() for p in layout.local_providers.rglob("*")), "provider blob(s)"),
        )
        if count
    ]
    if held:
        raise AlreadyInitialised(
            f"{layout.home} holds a node whose config.toml is missing ({', '.join(held)})",
            "restore config.toml, or rebuild the home from a provider's map backup: "
            "`metanode storage recover --home` pointing at it; init would replace its keystore",
        )


def _rows(database: Path, table: str) -> int:
    """Rows in ``table`` of an SQLite file (0 when there is no such file or table)."""
    if not database.exists():
        return 0
    try:  # not read-only: rows still in the write-ahead log count too
        with closing(sqlite3.connect(database)) as db:
            return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0  # an init killed before it made its tables
        return 1  # unreadable: not known to be empty, so not an init's leftover
    except sqlite3.DatabaseError:
        return 1


def _refuse_a_database_in_use(url: DatabaseUrl) -> None:
    """`init --map` makes a new node: a database that holds one already is `join`'s."""
    for schema in (MAP_SCHEMA, TRAIL_SCHEMA):
        try:
            open_database(url, schema, create=False, translate=lambda exc: exc).close()
        except DatabaseMissing:
            continue
        raise AlreadyInitialised(
            f"the database at {url} already holds a node ({schema} exists)",
            "add this host to it with `metanode storage distributed join --map URL`; if an "
            f"earlier init was interrupted, drop the schemas {MAP_SCHEMA} and {TRAIL_SCHEMA}",
        )


def join_node(home: Path, map_url: str, passphrase: Secret) -> NodeSettings:
    """Make ``home`` another host of the node whose map is at ``map_url``: its keystore
    and config come from the database, opened with the node's passphrase."""
    layout = NodeLayout(home)
    if layout.config.exists():
        raise AlreadyInitialised(
            f"a node already exists at {home}", "use it, or choose another --home"
        )
    url = DatabaseUrl(map_url)
    try:
        files = SharedFiles(url)
    except DatabaseMissing:
        raise NotInitialised(
            f"the database at {url} holds no node", "create one with `distributed init --map`"
        ) from None
    with closing(files):
        keystore = files.get(KEYSTORE)
        if keystore is None or files.get(CONFIG) is None:
            raise NotInitialised(
                f"the database at {url} holds no finished node",
                "run `distributed init --map` to the end on the first host",
            )
        with _making(home):
            with tempfile.TemporaryDirectory(dir=home, prefix=".join-") as tmp:
                candidate = Path(tmp) / KEYSTORE
                candidate.write_bytes(keystore[1])
                keys = read_keystore(candidate, passphrase)  # a wrong passphrase stops here
            files.map_key = keys.map_key.reveal()
            sync_home(layout, files)
    os.chmod(layout.config, 0o600)
    return load_settings(layout.config)


def relocate_recovered_provider(home: Path, reached: ProviderSettings) -> None:
    """The recovered config names the provider recovery read from as the lost machine
    reached it; from now on it is reached where recovery found the backup (a directory
    mounted elsewhere, a new endpoint), or the recovered node could not open it. The
    region only when one was given; credentials and the vendor stay as configured."""
    layout = NodeLayout(home)
    settings = load_settings(layout.config)
    moved = {name: getattr(reached, name) for name in LOCATION_FIELDS}
    if reached.region:
        moved["region"] = reached.region
    providers = tuple(
        replace(p, **moved) if p.name == reached.name else p for p in settings.providers
    )
    if providers != settings.providers:
        save_settings(layout.config, replace(settings, providers=providers))


def place_recovered_map(home: Path, passphrase: Secret, map_url: str) -> NodeSettings:
    """Where a recovered home's map goes (recovery writes it into the home as SQLite):
    into a new PostgreSQL database when ``map_url`` is given, the recovered node's first
    host; else it stays in the home, even for a node whose map was shared, since its
    database is what was lost."""
    layout = NodeLayout(home)
    settings = load_settings(layout.config)
    if not map_url:
        if settings.map_url:
            settings = replace(settings, map_url="")
            save_settings(layout.config, settings)
        return settings
    url = DatabaseUrl(map_url)
    _refuse_a_database_in_use(url)
    key = read_keystore(layout.keystore, passphrase).map_key.reveal()
    with (
        closing(BlockMap(layout.blockmap, key)) as source,
        closing(BlockMap(url, key, create=True)) as target,
    ):
        source.copy_into(target)
    origin = audit_origin(settings.node_id)
    with (
        closing(AuditTrail(layout.audit, origin)) as kept,
        closing(AuditTrail(url, origin, create=True)) as trail,
    ):
        kept.copy_into(trail)
    settings = replace(settings, map_url=url)
    save_settings(layout.config, settings)
    with closing(SharedFiles(url, key)) as files:
        sync_home(layout, files)
    for name in ("blockmap.sqlite", "audit.sqlite"):  # moved: the database holds them now
        for suffix in ("", "-wal", "-shm"):
            (layout.home / (name + suffix)).unlink(missing_ok=True)
    return settings


def change_redundancy(home: Path, scheme: Redundancy) -> NodeSettings:
    """Protect new chunks with ``scheme`` from now on (chunks already stored keep theirs
    until `repair --rewrite`); checked against the providers before it is written."""
    layout = NodeLayout(home)
    current = load_settings(layout.config)  # a home that is not a node fails here, clearly
    with holding_blocks_lock(layout.map_at(current.map_url), "change the redundancy"):
        settings = load_settings(layout.config)
        if scheme.is_erasure_coded:
            updated = replace(settings, redundancy=scheme.text())
        else:
            updated = replace(settings, redundancy="", replication_factor=scheme.pieces)
            if updated.max_cloud_providers < scheme.pieces:
                updated = replace(updated, max_cloud_providers=scheme.pieces)
        updated.validate()
        save_settings(layout.config, updated)
        return updated
