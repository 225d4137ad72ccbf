"""From configured provider settings to a live ``BlobStore``."""

from __future__ import annotations

from metanode_storage.config.settings import LOCAL_VENDOR, ProviderSettings
from metanode_storage.errors import InvalidSetting
from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.fsspec_store import LocalBlobStore


def open_provider(settings: ProviderSettings) -> BlobStore:
    if settings.vendor == LOCAL_VENDOR:
        return LocalBlobStore(settings.name, settings.path)
    raise InvalidSetting(
        f"provider '{settings.name}' uses vendor '{settings.vendor}', "
        "which this version cannot reach yet",
        "use local providers for now",
    )
