"""The HTTP API (aiohttp): blocks, verification, status, Prometheus metrics, health.

Every route but ``/health`` needs ``Authorization: Bearer <token>`` (the token
lives in the keystore; `metanode storage token show`). A missing or wrong
token gets 401 and an audit event. Engine calls run on worker threads;
bodies stream both ways. Errors are JSON ``{"error", "reference"}`` with a
4xx/5xx code, never a traceback. OpenAPI description: docs/api/openapi.yaml.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from functools import partial
from typing import Any

from aiohttp import web

from metanode_storage.audit.trail import DENIED
from metanode_storage.engine.metrics import prometheus_text
from metanode_storage.engine.node import Node
from metanode_storage.errors import (
    BlockNotFound,
    InputError,
    IntegrityError,
    MetanodeError,
    NodeBusy,
    ProviderError,
)
from metanode_storage.service.streams import BodyTooLarge, RequestBodyReader, ResponseWriter

NODE = web.AppKey("node", Node)
TOKEN = web.AppKey("token", bytes)
MAX_BODY = web.AppKey("max_body", int)


class InFlight:
    """Requests being handled, so a stopping service can wait for them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()


INFLIGHT = web.AppKey("inflight", InFlight)

_BLOCK_ID = re.compile(r"[0-9a-f-]{36}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, exc: MetanodeError | str) -> web.Response:
    if isinstance(exc, MetanodeError):
        body = {"error": str(exc), "reference": exc.reference}
    else:
        body = {"error": exc, "reference": ""}
    return web.json_response(body, status=status)


def _status_for(exc: MetanodeError) -> int:
    if isinstance(exc, BodyTooLarge):
        return 413
    if isinstance(exc, BlockNotFound):
        return 404
    if isinstance(exc, InputError):
        return 400
    if isinstance(exc, NodeBusy | ProviderError):
        return 503
    if isinstance(exc, IntegrityError):
        return 502  # what the providers returned failed verification
    return 500


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authentication, then one place where engine errors become HTTP errors."""
    node = request.app[NODE]
    if request.path != "/health":
        given = request.headers.get("Authorization", "")
        expected = b"Bearer " + request.app[TOKEN]
        if not hmac.compare_digest(given.encode(), expected):
            await _run(
                request,
                node.audit.record,
                "auth_failure",
                "",
                DENIED,
                {"method": request.method, "path": request.path, "peer": request.remote or ""},
            )
            return _error(401, "missing or wrong bearer token")
    task = asyncio.current_task()
    if task is not None:
        request.app[INFLIGHT].tasks.add(task)
    try:
        return await handler(request)
    except MetanodeError as exc:
        return _error(_status_for(exc), exc)
    finally:
        if task is not None:
            request.app[INFLIGHT].tasks.discard(task)


async def _run(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, partial(fn, *args))


def _block_id(request: web.Request) -> str:
    block_id = request.match_info["block_id"]
    if not _BLOCK_ID.fullmatch(block_id):
        raise InputError(f"{block_id!r} is not a block id")
    return block_id


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def store(request: web.Request) -> web.Response:
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"request body exceeds the limit of {limit:,} bytes")
    reader = RequestBodyReader(request, asyncio.get_running_loop(), limit)
    name = request.query.get("name", "")
    block = await _run(request, request.app[NODE].store, reader, name)
    return web.json_response(block.to_dict(), status=201)


async def retrieve(request: web.Request) -> web.StreamResponse:
    node = request.app[NODE]
    block = await _run(request, node.describe, _block_id(request))
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(block.size_bytes),
            "X-Metanode-Data-Hash": block.data_hash,
        }
    )
    await response.prepare(request)
    writer = ResponseWriter(response, asyncio.get_running_loop())
    try:
        await _run(request, node.retrieve, block.block_id, writer)
    except MetanodeError:
        # Headers are gone: cut the connection, so the client sees a short body
        # against Content-Length instead of bytes that did not verify.
        if request.transport is not None:
            request.transport.close()
        raise
    await response.write_eof()
    return response


async def head(request: web.Request) -> web.Response:
    block = await _run(request, request.app[NODE].describe, _block_id(request))
    return web.Response(
        headers={
            "Content-Length": str(block.size_bytes),
            "X-Metanode-Data-Hash": block.data_hash,
            "X-Metanode-Created-At": str(block.created_at),
        }
    )


async def delete(request: web.Request) -> web.Response:
    deleted = await _run(request, request.app[NODE].remove, _block_id(request))
    return web.json_response({"blobs_deleted": deleted})


async def verify(request: web.Request) -> web.Response:
    result = await _run(request, request.app[NODE].verify, _block_id(request))
    body = asdict(result)
    return web.json_response(body, status=200 if result.ok and not result.faults else 409)


async def status(request: web.Request) -> web.Response:
    report = await _run(request, request.app[NODE].status)
    return web.json_response(report.to_dict())


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    snapshot = await _run(request, node.metrics.snapshot)
    stats = await _run(request, node.blockmap.stats)
    gauges = {
        "blocks": stats.blocks,
        "logical_bytes": stats.logical_bytes,
        "replicas": stats.replicas,
        "faulty_replicas": stats.faulty_replicas,
        "short_chunks": stats.short_chunks,
    }
    return web.Response(
        text=prometheus_text(snapshot, gauges), content_type="text/plain", charset="utf-8"
    )


def make_app(node: Node, token: bytes, max_body: int) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1024**2)
    app[NODE] = node
    app[TOKEN] = token
    app[MAX_BODY] = max_body
    app[INFLIGHT] = InFlight()
    app.router.add_get("/health", health)
    app.router.add_post("/v1/blocks", store)
    app.router.add_get("/v1/blocks/{block_id}", retrieve, allow_head=False)
    app.router.add_head("/v1/blocks/{block_id}", head)
    app.router.add_delete("/v1/blocks/{block_id}", delete)
    app.router.add_post("/v1/blocks/{block_id}/verify", verify)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    return app
