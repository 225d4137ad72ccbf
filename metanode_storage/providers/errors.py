"""The one place where filesystem and SDK exceptions become provider errors.

Translation goes by exception type and errno, never by message text, and the
original exception stays attached as ``__cause__`` for ``--debug``.
"""

from __future__ import annotations

import errno

from metanode_storage.errors import (
    ObjectNotFound,
    PermissionDenied,
    ProviderError,
    ProviderUnavailable,
    QuotaExceeded,
)

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def translate(provider: str, exc: BaseException, what: str) -> ProviderError:
    """Map ``exc`` raised while doing ``what`` on ``provider`` to a ProviderError."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return ObjectNotFound(provider, f"{what}: not found")
    if isinstance(exc, PermissionError):
        return PermissionDenied(provider, f"{what}: permission denied", "check the credentials")
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return QuotaExceeded(provider, f"{what}: no space left", "free space or add a provider")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
    return ProviderUnavailable(provider, f"{what}: {reason}")
