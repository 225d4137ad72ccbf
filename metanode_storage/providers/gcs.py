"""Google Cloud Storage, through gcsfs.

gcsfs's default class probes the bucket type over gRPC and stalls for
tens of seconds against any HTTP endpoint unless
``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false`` is set before it is imported;
we set it (if the operator has not) and use ``gcsfs.core.GCSFileSystem``.
Its request retry count (6, about 33 s of back-off) has no constructor
setting, so a subclass re-wraps the request method with two attempts.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import aiohttp
from gcsfs.core import GCSFileSystem
from gcsfs.retry import HttpError, retry_request
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError, RefreshError

from metanode_storage.config.secrets import Secret
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import PermissionDenied, ProviderError, ProviderUnavailable
from metanode_storage.providers.errors import by_status
from metanode_storage.providers.fsspec_store import FsspecBlobStore

_REQUEST_ATTEMPTS = 2


class BoundedGCSFileSystem(GCSFileSystem):  # type: ignore[misc]
    """GCSFileSystem whose HTTP requests are tried twice, not six times."""

    _request = retry_request(retries=_REQUEST_ATTEMPTS)(GCSFileSystem._request.__wrapped__)


def translate_gcs(provider: str, exc: BaseException, what: str) -> ProviderError | None:
    if isinstance(exc, HttpError):
        return by_status(provider, getattr(exc, "code", None), what) or ProviderUnavailable(
            provider, f"{what}: HTTP {getattr(exc, 'code', '?')}"
        )
    if isinstance(exc, DefaultCredentialsError | RefreshError):
        return PermissionDenied(
            provider,
            f"{what}: no usable Google credentials ({type(exc).__name__})",
            "set GOOGLE_APPLICATION_CREDENTIALS or use --credentials keystore",
        )
    if isinstance(exc, aiohttp.ClientError | GoogleAuthError):
        return ProviderUnavailable(provider, f"{what}: {type(exc).__name__}")
    return None


def open_gcs(
    settings: ProviderSettings, endpoint: str | None, credentials: Mapping[str, Secret]
) -> FsspecBlobStore:
    token: Any = None  # the SDK's chain: GOOGLE_APPLICATION_CREDENTIALS, gcloud, metadata
    if settings.credentials == "anonymous":
        token = "anon"
    elif settings.credentials == "keystore":
        token = json.loads(credentials["service_account_json"].reveal())
    with warnings.catch_warnings():
        # Without a project gcsfs warns on every construction (every command); a project
        # is only needed to create or list buckets, and `--create-bucket` asks for one.
        warnings.filterwarnings("ignore", message="GCS project not set")
        fs = BoundedGCSFileSystem(
            project=settings.account or None,
            token=token,
            endpoint_url=endpoint,
            requests_timeout=settings.timeout,
            skip_instance_cache=True,
        )
    root = f"{settings.bucket}/{settings.prefix.strip('/')}".rstrip("/")
    return FsspecBlobStore(
        settings.name, fs, root, timeout=settings.timeout, translator=translate_gcs
    )
