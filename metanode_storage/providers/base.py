"""The one interface every provider implements.

A provider stores opaque blobs under opaque keys. It knows nothing about
blocks, chunks or files. Keys are validated strictly here so that no caller
can smuggle a path, a file name or a block id onto a provider by mistake.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator

from metanode_storage.errors import InvalidSetting

# 32 to 64 lowercase hex digits: keyed hashes or random names, nothing else.
_KEY = re.compile(r"[0-9a-f]{32,64}")


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidSetting(f"blob key {key!r} is not 32-64 lowercase hex digits")
    return key


class BlobStore(ABC):
    """Blob storage on one provider. Methods raise ``ProviderError`` subclasses only."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` durably under ``key``; a reader never sees a partial blob."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The whole blob; ``ObjectNotFound`` if absent."""

    @abstractmethod
    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` (exclusive) of the blob, absolute offsets only
        (suffix ranges are wrong on several servers); ``ObjectNotFound`` if absent."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The blob's size in bytes; ``ObjectNotFound`` if absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob; removing an absent blob is not an error."""

    @abstractmethod
    def list_keys(self) -> Iterator[str]:
        """Every blob key held, in no particular order."""

    @abstractmethod
    def check_reachable(self) -> None:
        """Raise ``ProviderUnavailable`` unless the provider answers now."""

    @abstractmethod
    def create_bucket(self) -> None:
        """Create the bucket, container or directory if it does not exist yet."""

    def remove_partial_writes(  # noqa: B027 - optional hook, no-op by default
        self, is_ours: Callable[[str], bool]
    ) -> None:
        """Clear leftovers of this node's interrupted writes (object stores have none);
        ``is_ours`` tells whether the blob key being written belonged to this node."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
