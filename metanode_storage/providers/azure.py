"""Azure Blob Storage, through adlfs.

adlfs does not pass retry settings to the Azure SDK (whose defaults take
84-171 s to give up on a dead endpoint), so a subclass builds the service
client itself with one quick retry and short connect and read timeouts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from adlfs import AzureBlobFileSystem
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob.aio import BlobServiceClient, LinearRetry

from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import (
    InvalidSetting,
    ObjectNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
)
from metanode_storage.providers.errors import by_status
from metanode_storage.providers.fsspec_store import FsspecBlobStore

CONNECTION_STRING_ENV = "AZURE_STORAGE_CONNECTION_STRING"


class BoundedAzureBlobFileSystem(AzureBlobFileSystem):  # type: ignore[misc]
    """AzureBlobFileSystem whose service client retries once, with short timeouts."""

    # Set after construction (adlfs connects inside __init__), then do_connect() again.
    client_timeouts: dict[str, Any] = {}
    endpoint_override: str | None = None

    def do_connect(self) -> None:
        # The storage SDK's default retry waits 15 s or more before retrying; wait 1 s, once.
        retry = LinearRetry(backoff=1, random_jitter_range=0, retry_total=1)
        options = {"retry_policy": retry, **self.client_timeouts}
        if self.connection_string is not None:
            self.service_client = BlobServiceClient.from_connection_string(
                conn_str=self.connection_string, **options
            )
        elif self.account_name is not None:
            url = self.endpoint_override or f"https://{self.account_name}.blob.core.windows.net"
            credential = self.credential or self.account_key
            self.service_client = BlobServiceClient(
                account_url=url, credential=credential, **options
            )
        else:
            super().do_connect()


def translate_azure(provider: str, exc: BaseException, what: str) -> ProviderError | None:
    if isinstance(exc, ValueError) and isinstance(exc.__cause__, AzureError):
        exc = exc.__cause__  # adlfs wraps some SDK failures in ValueError
    if isinstance(exc, ResourceNotFoundError):
        return ObjectNotFound(provider, f"{what}: not found")
    if isinstance(exc, ClientAuthenticationError):
        return PermissionDenied(provider, f"{what}: authentication failed", "check the credentials")
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return ProviderUnavailable(provider, f"{what}: cannot connect ({type(exc).__name__})")
    if isinstance(exc, HttpResponseError):
        return by_status(provider, exc.status_code, what) or ProviderUnavailable(
            provider, f"{what}: HTTP {exc.status_code}"
        )
    if isinstance(exc, AzureError):
        return ProviderUnavailable(provider, f"{what}: {type(exc).__name__}")
    return None


def open_azure(
    settings: ProviderSettings, endpoint: str | None, credentials: Mapping[str, Secret]
) -> FsspecBlobStore:
    # assume_container_exists=False: otherwise adlfs answers "exists" when the service is down.
    kwargs: dict[str, Any] = {"skip_instance_cache": True, "assume_container_exists": False}
    if settings.credentials == "keystore" and "connection_string" in credentials:
        kwargs["connection_string"] = credentials["connection_string"].reveal().decode()
    elif settings.credentials == "keystore":
        kwargs["account_name"] = settings.account
        kwargs["account_key"] = credentials["account_key"].reveal().decode()
    elif settings.credentials == "sdk" and os.environ.get(CONNECTION_STRING_ENV):
        kwargs["connection_string"] = os.environ[CONNECTION_STRING_ENV]
    elif settings.account:
        kwargs["account_name"] = settings.account
        kwargs["anon"] = settings.credentials == "anonymous"
    else:
        raise InvalidSetting(
            f"provider '{settings.name}' has no Azure account",
            f"pass --account, set {CONNECTION_STRING_ENV}, or store a connection string",
        )
    fs = BoundedAzureBlobFileSystem(**kwargs)
    fs.endpoint_override = endpoint
    fs.client_timeouts = {
        "connection_timeout": min(2.0, settings.timeout),
        "read_timeout": settings.timeout,
    }
    fs.do_connect()
    root = f"{settings.bucket}/{settings.prefix.strip('/')}".rstrip("/")
    return FsspecBlobStore(
        settings.name, fs, root, timeout=settings.timeout, translator=translate_azure
    )
