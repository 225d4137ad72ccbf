"""Storage providers behind one small interface (``BlobStore``)."""

from metanode_storage.providers.base import BlobStore
from metanode_storage.providers.catalogue import open_provider

__all__ = ["BlobStore", "open_provider"]
