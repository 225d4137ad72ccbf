"""The node's settings, kept in ``config.toml``.

The file holds no secret: keys live in the keystore, and cloud credentials in
each SDK's own sources or, sealed, in the keystore. It is written with tomli-w
and read with tomllib.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import tomli_w

from metanode_storage.database import DatabaseUrl
from metanode_storage.errors import ConfigDamaged, InvalidSetting, NotInitialised
from metanode_storage.fileio import atomic_write
from metanode_storage.redundancy import Redundancy

CONFIG_FORMAT_VERSION = 1
MAX_REPLICATION_FACTOR = 5
LOCAL_VENDOR = "local"
CREDENTIAL_SOURCES = ("sdk", "keystore", "anonymous")
# The catalogue of the seed; providers/catalogue.py says how each is reached.
VENDORS = (
    "aws",
    "gcp",
    "azure",
    "digitalocean",
    "linode",
    "vultr",
    "hetzner",
    "ovh",
    "cloudflare",
    LOCAL_VENDOR,
)


# With the vendor, what says where a provider's blobs are
LOCATION_FIELDS = ("path", "bucket", "prefix", "endpoint", "account")


@dataclass(frozen=True)
class ProviderSettings:
    """One configured storage location (a directory, bucket or container)."""

    name: str
    vendor: str
    path: str = ""  # local providers: the directory that holds the blobs
    region: str = ""
    bucket: str = ""  # bucket (S3, GCS) or container (Azure)
    prefix: str = ""  # key prefix inside the bucket, so one bucket can serve several nodes
    endpoint: str = ""  # overrides the vendor's endpoint (tests, MinIO, Ceph, private S3)
    account: str = ""  # Cloudflare account id, Azure storage account name, GCP project
    # Where credentials come from: "sdk" (the SDK's own chain: environment, profiles,
    # GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_CONNECTION_STRING), "keystore"
    # (sealed in the keystore by `providers configure --store-credentials`), or "anonymous".
    credentials: str = "sdk"
    profile: str = ""  # AWS-style named profile, with credentials = "sdk"
    timeout: float = 5.0  # seconds for one small operation; transfers get 1 s more per MB

    @property
    def is_local(self) -> bool:
        return self.vendor == LOCAL_VENDOR

    def location(self) -> tuple[str, ...]:
        """What decides which blobs the provider reaches (the region does not: a bucket
        stays where it is)."""
        return (self.vendor, *(getattr(self, f) for f in LOCATION_FIELDS))

    def validate(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise InvalidSetting(
                f"provider name {self.name!r} is not valid",
                "use letters, digits, '-', '_' and '.'",
            )
        if self.vendor not in VENDORS:
            raise InvalidSetting(
                f"provider '{self.name}' has unknown vendor {self.vendor!r}",
                f"choose one of: {', '.join(VENDORS)}",
            )
        if self.vendor == LOCAL_VENDOR and not self.path:
            raise InvalidSetting(f"local provider '{self.name}' has no path", "pass --path DIR")
        if self.vendor != LOCAL_VENDOR and not self.bucket:
            raise InvalidSetting(f"provider '{self.name}' has no bucket", "pass --bucket")
        if self.credentials not in CREDENTIAL_SOURCES:
            raise InvalidSetting(
                f"provider '{self.name}' has unknown credential source {self.credentials!r}",
                f"choose one of: {', '.join(CREDENTIAL_SOURCES)}",
            )
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise InvalidSetting(f"provider '{self.name}': endpoint must be an http(s) URL")
        if "@" in self.endpoint:
            raise InvalidSetting(
                f"provider '{self.name}': credentials do not belong in the endpoint URL",
                "use --credentials keystore or the SDK's environment variables",
            )
        if not 0.1 <= self.timeout <= 600:
            raise InvalidSetting(f"provider '{self.name}': timeout must be 0.1 to 600 s")


@dataclass(frozen=True)
class NodeSettings:
    node_id: str
    replication_factor: int = 3
    max_cloud_providers: int = 5
    encryption: bool = True
    compression: bool = True
    backup_enabled: bool = True
    audit_enabled: bool = True
    # With fewer healthy providers than the replication factor a store fails
    # unless this is set; then it succeeds with fewer replicas.
    allow_under_replication: bool = False
    # Chunks are written into pack blobs of about this size per provider (engine/packs.py);
    # gc rewrites a pack once less than repack_below of its bytes are still in use.
    pack_target_bytes: int = 4 * 1024 * 1024
    repack_below: float = 0.5
    # "ec:K+M" erasure-codes new chunks into K+M fragments (redundancy.py); empty keeps
    # ``replication_factor`` full replicas. Chunks stored before a change keep theirs
    # until `repair --rewrite`.
    redundancy: str = ""
    # postgresql://USER@HOST[:PORT]/DATABASE: the block map, trail and leases live there,
    # shared by every host of the node (`init --map`, `join`); empty keeps them in the home.
    map_url: str = ""
    providers: tuple[ProviderSettings, ...] = field(default_factory=tuple)

    @property
    def scheme(self) -> Redundancy:
        """How new chunks are protected."""
        if self.redundancy:
            return Redundancy.parse(self.redundancy)
        return Redundancy.replicas(self.replication_factor)

    @property
    def providers_per_store(self) -> int:
        """Providers one store may spread over: enough for every fragment."""
        return max(self.max_cloud_providers, self.scheme.pieces)

    def validate(self) -> None:
        if self.map_url:
            DatabaseUrl(self.map_url)  # raises InvalidSetting, with the reason
        if not 1 <= self.replication_factor <= MAX_REPLICATION_FACTOR:
            raise InvalidSetting(
                f"replication factor {self.replication_factor} is out of range",
                f"use 1 to {MAX_REPLICATION_FACTOR}",
            )
        if not self.replication_factor <= self.max_cloud_providers <= MAX_REPLICATION_FACTOR:
            raise InvalidSetting(
                f"max providers {self.max_cloud_providers} is out of range",
                f"use {self.replication_factor} (the replication factor) "
                f"to {MAX_REPLICATION_FACTOR}",
            )
        if not 64 * 1024 <= self.pack_target_bytes <= 256 * 1024 * 1024:
            raise InvalidSetting("pack_target_bytes must be 64 KiB to 256 MiB")
        if not 0.0 <= self.repack_below <= 1.0:
            raise InvalidSetting("repack_below must be between 0 and 1")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise InvalidSetting("two providers share a name", "give each a unique name")
        for provider in self.providers:
            provider.validate()
        scheme = self.scheme
        if len(self.providers) < scheme.pieces and not self.allow_under_replication:
            kind = "fragments" if scheme.is_erasure_coded else "replicas"
            raise InvalidSetting(
                f"{len(self.providers)} provider(s) cannot hold "
                f"{scheme.pieces} {kind} on distinct providers ({scheme.text()})",
                "add providers or choose a smaller --redundancy",
            )


def save_settings(path: Path, settings: NodeSettings) -> None:
    """Write the config atomically, so a crash never leaves half a file."""
    body = asdict(settings)
    providers = body.pop("providers")
    defaults = {f.name: f.default for f in fields(ProviderSettings)}  # omitted when unchanged
    document: dict[str, Any] = {
        "format_version": CONFIG_FORMAT_VERSION,
        "node": body,
        "providers": [
            {k: v for k, v in p.items() if v != defaults.get(k, MISSING)} for p in providers
        ],
    }
    atomic_write(path, tomli_w.dumps(document).encode())


def _known(table: Any, cls: type, where: str) -> dict[str, Any]:
    """The table's settings, refusing names the dataclass does not have (a typo in the
    file must be named, not surface as a Python TypeError)."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} is not a table")
    allowed = {f.name for f in fields(cls)} - {"providers"}
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} in {where}")
    for setting in fields(cls):  # a value of the wrong kind, named here, not deep inside
        value = table.get(setting.name)
        wanted = _KINDS.get(str(setting.type))
        if value is not None and wanted and not _is_kind(value, wanted[0]):
            raise ValueError(f"{setting.name} = {value!r} in {where} is not {wanted[1]}")
    return dict(table)


# The setting types the config holds (annotations are strings here), and how to say them.
_KINDS: dict[str, tuple[type, str]] = {
    "str": (str, "text in quotes"),
    "int": (int, "a whole number"),
    "float": (float, "a number"),
    "bool": (bool, "true or false"),
}


def _is_kind(value: object, kind: type) -> bool:
    if kind is float:  # TOML's 5 is as good as 5.0; true is no number
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def load_settings(path: Path) -> NodeSettings:
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        where = path.parent
        is_file = where.exists() and not where.is_dir()
        raise NotInitialised(
            f"{where} is a file, not a node home" if is_file else f"no node at {where}",
            "run `metanode storage distributed init` or pass --home",
        ) from None
    except OSError as exc:
        raise ConfigDamaged(
            f"cannot read the config {path}: {exc.strerror}", "check the file and its permissions"
        ) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
        if document.get("format_version") != CONFIG_FORMAT_VERSION:
            raise ValueError(f"format_version {document.get('format_version')!r}")
        node = _known(document["node"], NodeSettings, "[node]")
        listed = document.get("providers", [])
        if not isinstance(listed, list):
            raise ValueError("providers is not a list of tables")
        providers = tuple(
            ProviderSettings(**_known(p, ProviderSettings, f"[[providers]] #{i + 1}"))
            for i, p in enumerate(listed)
        )
        settings = NodeSettings(**node, providers=providers)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigDamaged(
            f"config {path} is damaged: {exc}",
            "restore it from a backup or fix the TOML by hand",
        ) from None
    try:
        settings.validate()
    except InvalidSetting as exc:
        raise ConfigDamaged(f"config {path} is invalid: {exc.message}", exc.hint) from None
    return settings
