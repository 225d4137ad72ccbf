"""Bridges between aiohttp's async streams and the engine's blocking file objects.

The engine runs on worker threads; these adapters let it read a request body
and write a response body a piece at a time, so memory stays bounded for a
body of any size.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from typing import Any

from aiohttp import web

from metanode_storage.errors import InputError

_PIECE = 1 << 20


class BodyTooLarge(InputError):
    reference = "MN-601"


class BodyStalled(InputError):
    """The client stopped sending its body: the upload is abandoned (HTTP 408), so a
    stalled client cannot hold a worker and the node's store lock for ever."""

    reference = "MN-602"


class RequestBodyReader(io.RawIOBase):
    """A blocking ``read`` over an aiohttp request body, with a size limit."""

    def __init__(
        self,
        request: web.Request,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        idle_timeout: float,
    ) -> None:
        self._request = request
        self._loop = loop
        self._limit = limit
        self._idle_timeout = idle_timeout
        self.received = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), _PIECE)
        future = asyncio.run_coroutine_threadsafe(self._request.content.read(wanted), self._loop)
        try:
            data = future.result(timeout=self._idle_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise BodyStalled(
                f"the request body stalled: no data for {self._idle_timeout:g} s"
            ) from None
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
