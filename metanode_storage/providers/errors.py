"""Where filesystem and SDK exceptions become provider errors.

Translation goes by exception type, status code and errno, never by message
text, and the original exception stays attached as ``__cause__`` for
``--debug``. Messages carry type names and codes only: SDK messages can quote
URLs, and URLs can carry signatures or SAS tokens.

Each cloud family adds its own rules through a ``Translator``; the generic
rules below run after them.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable

from fsspec.exceptions import FSTimeoutError

from metanode_storage.errors import (
    ObjectNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    QuotaExceeded,
)

Translator = Callable[[str, BaseException, str], ProviderError | None]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def by_status(provider: str, status: int | None, what: str) -> ProviderError | None:
    """The usual meaning of an HTTP status from an object store."""
    if status == 404:
        return ObjectNotFound(provider, f"{what}: not found (HTTP 404)")
    if status in (401, 403):
        return PermissionDenied(
            provider, f"{what}: access denied (HTTP {status})", "check the credentials"
        )
    if status in (507,):
        return QuotaExceeded(provider, f"{what}: storage full (HTTP {status})")
    return None


def translate(
    provider: str, exc: BaseException, what: str, family: Translator | None = None
) -> ProviderError | None:
    """Map ``exc`` raised while doing ``what`` on ``provider`` to a ProviderError.

    None means ``exc`` is not a storage failure (a bug, say an AttributeError):
    the caller re-raises it, so it surfaces as an internal error instead of
    passing for an outage.
    """
    if isinstance(exc, ProviderError):
        return exc
    if family is not None:
        specific = family(provider, exc, what)
        if specific is not None:
            return specific
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFound(provider, f"{what}: not found")
    if isinstance(exc, PermissionError):
        return PermissionDenied(provider, f"{what}: permission denied", "check the credentials")
    if isinstance(exc, FSTimeoutError | asyncio.TimeoutError | TimeoutError):
        return ProviderUnavailable(provider, f"{what}: timed out")
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return QuotaExceeded(provider, f"{what}: no space left", "free space or add a provider")
    if isinstance(exc, OSError) and exc.errno is not None and exc.strerror:
        return ProviderUnavailable(provider, f"{what}: {exc.strerror}")
    if isinstance(exc, OSError):  # ConnectionError and the OSErrors that SDKs raise
        return ProviderUnavailable(provider, f"{what}: {type(exc).__name__}")
    return None
