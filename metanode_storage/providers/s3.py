"""AWS S3 and the S3-compatible vendors, through s3fs.

Retries are bounded on both layers: botocore's (two attempts, legacy mode)
and s3fs's own loop (one attempt: botocore's retry is enough), with a short
connect timeout, so that a dead endpoint fails in about a second instead of
10-14 s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import s3fs
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import PermissionDenied, ProviderError, ProviderUnavailable
from metanode_storage.providers.errors import by_status
from metanode_storage.providers.fsspec_store import FsspecBlobStore

_S3FS_ATTEMPTS = 1
_DEFAULT_REGION = "us-east-1"


def translate_s3(provider: str, exc: BaseException, what: str) -> ProviderError | None:
    if isinstance(exc, NoCredentialsError):
        return PermissionDenied(
            provider,
            f"{what}: no credentials found",
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or --credentials keystore",
        )
    if isinstance(exc, BotoCoreError):  # connection, timeout, endpoint and parsing errors
        return ProviderUnavailable(provider, f"{what}: {type(exc).__name__}")
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return by_status(provider, status, what) or ProviderUnavailable(
            provider, f"{what}: {exc.response.get('Error', {}).get('Code', 'error')}"
        )
    return None


def open_s3(
    settings: ProviderSettings, endpoint: str | None, credentials: Mapping[str, Secret]
) -> FsspecBlobStore:
    kwargs: dict[str, Any] = {
        "skip_instance_cache": True,
        "endpoint_url": endpoint,
        "config_kwargs": {
            "connect_timeout": min(2.0, settings.timeout),
            "read_timeout": settings.timeout,
            # legacy mode: its one retry waits under a second (standard mode: up to 2 s)
            "retries": {"max_attempts": 2, "mode": "legacy"},
        },
    }
    if settings.region:
        kwargs["client_kwargs"] = {"region_name": settings.region}
    if settings.credentials == "anonymous":
        kwargs["anon"] = True
    elif settings.credentials == "keystore":
        kwargs["key"] = credentials["access_key_id"].reveal().decode()
        kwargs["secret"] = credentials["secret_access_key"].reveal().decode()
        if "session_token" in credentials:
            kwargs["token"] = credentials["session_token"].reveal().decode()
    elif settings.profile:
        kwargs["profile"] = settings.profile
    fs = s3fs.S3FileSystem(**kwargs)
    fs.retries = _S3FS_ATTEMPTS
    root = f"{settings.bucket}/{settings.prefix.strip('/')}".rstrip("/")
    return S3BlobStore(settings.name, fs, root, timeout=settings.timeout, region=settings.region)


class S3BlobStore(FsspecBlobStore):
    def __init__(
        self, name: str, fs: s3fs.S3FileSystem, root: str, *, timeout: float, region: str
    ) -> None:
        super().__init__(name, fs, root, timeout=timeout, translator=translate_s3)
        self._region = region

    def create_bucket(self) -> None:
        """S3 refuses a LocationConstraint of us-east-1 (its default region), and s3fs's
        mkdir sends one whenever a region is set: create the bucket ourselves."""
        bucket = self.root.split("/", 1)[0]
        if self._call("reach", "exists", bucket):
            return
        params: dict[str, Any] = {"Bucket": bucket}
        if self._region and self._region != _DEFAULT_REGION:
            params["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
        self._call("create bucket", "call_s3", "create_bucket", **params)
        self.fs.invalidate_cache(bucket)
