"""Bridges between aiohttp's async streams and the engine's blocking file objects.

The engine runs on worker threads; these adapters let it read a request body
and write a response body a piece at a time, so memory stays bounded for a
body of any size.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiohttp import web

from metanode_storage.errors import InputError

_PIECE = 1 << 20


class BodyTooLarge(InputError):
    reference = "MN-601"


class RequestBodyReader(io.RawIOBase):
    """A blocking ``read`` over an aiohttp request body, with a size limit."""

    def __init__(self, request: web.Request, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._request = request
        self._loop = loop
        self._limit = limit
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), _PIECE)
        future = asyncio.run_coroutine_threadsafe(self._request.content.read(wanted), self._loop)
        data = future.result()
        self.received += len(data)
        if self.received > self._limit:
            raise BodyTooLarge(f"request body exceeds the limit of {self._limit:,} bytes")
        buffer[: len(data)] = data
        return len(data)


class ResponseWriter(io.RawIOBase):
    """A blocking ``write`` into an aiohttp streamed response."""

    def __init__(self, response: web.StreamResponse, loop: asyncio.AbstractEventLoop) -> None:
        self._response = response
        self._loop = loop

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        asyncio.run_coroutine_threadsafe(self._response.write(chunk), self._loop).result()
        return len(chunk)
