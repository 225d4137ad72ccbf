"""Adding and changing providers, keeping their credentials, and probing them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import (
    NodeSettings,
    ProviderSettings,
    load_settings,
    save_settings,
)
from metanode_storage.crypto.keystore import KeyMaterial, read_keystore, update_keystore
from metanode_storage.engine.qlock import holding_blocks_lock
from metanode_storage.engine.setup import node_bucket_name
from metanode_storage.errors import InvalidSetting, MetanodeError, ProviderError
from metanode_storage.fileio import atomic_write
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.catalogue import open_provider, vendor_named, vendor_of
from metanode_storage.providers.health import HealthBoard

GCP_CREDENTIALS_FILE = "GOOGLE_APPLICATION_CREDENTIALS"
log = logging.getLogger("metanode.providers")


def provider_for_region(settings: NodeSettings, vendor: str, region: str) -> ProviderSettings:
    """The seed's `--aws-region us-east-1` style: update the provider named after the
    vendor, or add one with this node's default bucket."""
    vendor_named(vendor)  # validates the name
    for existing in settings.providers:
        if existing.name == vendor:
            return replace(existing, region=region)
    bucket = node_bucket_name(settings.node_id)
    return ProviderSettings(vendor, vendor, region=region, bucket=bucket)


def credentials_from_environment(provider: ProviderSettings) -> dict[str, Secret]:
    """Read the vendor's credential variables now, to seal them in the keystore.

    Values come from the environment, never from the command line, where
    they would end up in shell history and process listings.
    """
    found: dict[str, Secret] = {}
    for field_name, variable in vendor_of(provider).credential_env:
        value = os.environ.get(variable)
        if not value:
            continue
        if variable == GCP_CREDENTIALS_FILE:
            try:
                found[field_name] = Secret(Path(value).read_bytes())
            except OSError as exc:
                raise InvalidSetting(
                    f"cannot read {variable} file: {exc.strerror}", "check the path"
                ) from None
        else:
            found[field_name] = Secret(value.encode())
    required = {f for f, _ in vendor_of(provider).credential_env} - {"session_token"}
    if provider.vendor == "azure" and "connection_string" not in found:
        if os.environ.get("AZURE_STORAGE_KEY"):
            found["account_key"] = Secret(os.environ["AZURE_STORAGE_KEY"].encode())
        required = {"account_key"} if "account_key" in found else required
    missing = required - set(found)
    if missing:
        names = ", ".join(v for f, v in vendor_of(provider).credential_env if f in missing)
        raise InvalidSetting(
            f"no credentials for provider '{provider.name}' in the environment",
            f"set {names} (or AZURE_STORAGE_KEY for Azure) and run again",
        )
    return found


def configure_providers(
    home: Path,
    providers: Sequence[ProviderSettings],
    *,
    passphrase: Callable[[], Secret] | None = None,
    store_credentials: bool = False,
    create_bucket: bool = False,
) -> NodeSettings:
    """Add or replace the providers of those names, all or nothing.

    Everything that can fail comes before anything is written: validation,
    reading credentials from the environment, creating buckets (or local
    directories). Then the keystore (sealed credentials) and the config are
    written; if the config cannot be, the keystore is put back as it was.
    ``passphrase`` is asked for only when the keystore must be opened.
    """
    layout = NodeLayout(home)
    settings = load_settings(layout.config)  # a home that is not a node fails here, clearly
    with holding_blocks_lock(layout.map_at(settings.map_url), "change the providers"):
        return _configure_locked(layout, providers, passphrase, store_credentials, create_bucket)


def _configure_locked(
    layout: NodeLayout,
    providers: Sequence[ProviderSettings],
    passphrase: Callable[[], Secret] | None,
    store_credentials: bool,
    create_bucket: bool,
) -> NodeSettings:
    settings = load_settings(layout.config)
    chosen = [
        replace(p, credentials="keystore") if store_credentials and not p.is_local else p
        for p in providers
    ]
    names = {p.name for p in chosen}
    updated = replace(
        settings,
        providers=(*(p for p in settings.providers if p.name not in names), *chosen),
    )
    updated.validate()
    keyed = [p for p in chosen if p.credentials == "keystore"]
    secret: Secret | None = None
    found: dict[str, Mapping[str, Secret]] = {}
    if store_credentials:
        found = {p.name: credentials_from_environment(p) for p in keyed}
    if keyed and (store_credentials or create_bucket):
        if passphrase is None:
            raise InvalidSetting("the keystore must be opened for this change")
        secret = passphrase()
        if not store_credentials:
            held = read_keystore(layout.keystore, secret).provider_credentials
            found = {p.name: held.get(p.name, {}) for p in keyed}
    for provider in chosen:
        if create_bucket:
            open_provider(provider, found.get(provider.name)).create_bucket()
        elif provider.is_local and not Path(provider.path).is_dir():
            raise InvalidSetting(
                f"directory {provider.path} does not exist",
                "create it, or pass --create-bucket",
            )
    for provider in chosen:
        _warn_if_moved_to_nothing(settings, provider, found.get(provider.name))
    previous_keystore = layout.keystore.read_bytes() if store_credentials and keyed else None
    if previous_keystore is not None and secret is not None:

        def seal(material: KeyMaterial) -> None:
            for name, credentials in found.items():
                material.provider_credentials[name] = dict(credentials)

        update_keystore(layout.keystore, secret, seal)
    try:
        save_settings(layout.config, updated)
    except BaseException:
        if previous_keystore is not None:
            atomic_write(layout.keystore, previous_keystore)
        raise
    board = HealthBoard(layout.health)
    board.forget(names)
    board.save()
    return updated


def _warn_if_moved_to_nothing(
    settings: NodeSettings, provider: ProviderSettings, credentials: Mapping[str, Secret] | None
) -> None:
    """A provider pointed somewhere else (a disk mounted elsewhere, another bucket) is
    taken to hold its blobs there: its replicas stay counted until a verify or a repair
    looks. A mistyped path moved them all out of reach without a word; where the old
    location holds blobs and the new one none, the operator is told now."""
    before = next((p for p in settings.providers if p.name == provider.name), None)
    if before is None or before.location() == provider.location():
        return
    held = _holds_blobs(before, credentials)
    if held and _holds_blobs(provider, credentials) is False:
        log.warning(
            "%s now points at a location that holds no blobs, and the blobs it held are "
            "still where it pointed before. Move them there, or run `metanode storage "
            "repair` to re-create its replicas from the other providers",
            provider.name,
        )


def _holds_blobs(
    provider: ProviderSettings, credentials: Mapping[str, Secret] | None
) -> bool | None:
    """Whether the location holds any blob; None when it cannot be asked."""
    try:
        return next(iter(open_provider(provider, credentials).list_keys()), None) is not None
    except MetanodeError:
        return None


@dataclass(frozen=True)
class ProbeResult:
    provider: str
    ok: bool
    write_ms: float | None = None
    read_ms: float | None = None
    delete_ms: float | None = None
    error: str = ""


def probe_provider(store: BlobStore) -> ProbeResult:
    """Write, read back and delete a random probe blob, timing each step."""
    key, body = os.urandom(16).hex(), os.urandom(1024)
    timings: list[float | None] = []

    def timed(step: Callable[[], object]) -> object:
        started = time.perf_counter()
        result = step()
        timings.append((time.perf_counter() - started) * 1000)
        return result

    try:
        timed(lambda: store.put(key, body))
        read_back = timed(lambda: store.get(key))
        timed(lambda: store.delete(key))
    except MetanodeError as exc:
        problem = exc.message if isinstance(exc, ProviderError) else str(exc)
        return _probe_result(store.name, timings, problem)
    return _probe_result(store.name, timings, "" if read_back == body else "read back other bytes")


def _probe_result(name: str, timings: list[float | None], problem: str) -> ProbeResult:
    write, read, delete = [*timings, None, None, None][:3]
    return ProbeResult(name, not problem, write, read, delete, problem)
