"""The HTTP API (aiohttp): blocks, verification, status, Prometheus metrics, health.

Every route but ``/health`` needs ``Authorization: Bearer <token>`` (the token
lives in the keystore; `metanode storage token show`). A missing or wrong
token gets 401 and an audit event. Engine calls run on worker threads;
bodies stream both ways. Errors, 404 and 405 included, are JSON
``{"error", "reference"}``, never a traceback, and name no local path.
OpenAPI description: docs/api/openapi.yaml.

Hostile clients: uploads run in their own bounded pool, and one beyond its
size is refused at once (503) rather than queued, so stalled uploads never
starve status, metrics or health; a body that sends nothing for
``body_timeout`` seconds is abandoned (408), releasing its worker and the
node's store lock.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, BinaryIO, cast

from aiohttp import web

from metanode_storage.audit.trail import DENIED
from metanode_storage.engine.node import Node
from metanode_storage.errors import (
    BlockNotFound,
    InputError,
    IntegrityError,
    MetanodeError,
    NodeBusy,
    ProviderError,
)
from metanode_storage.service import prometheus
from metanode_storage.service.auth_failures import AuthFailures
from metanode_storage.service.streams import (
    BodyStalled,
    BodyTooLarge,
    RequestBodyReader,
    ResponseWriter,
)

NODE = web.AppKey("node", Node)
TOKEN = web.AppKey("token", bytes)


@dataclass(frozen=True)
class Limits:
    max_body: int  # bytes in one upload
    body_timeout: float  # seconds an upload may send nothing before it is abandoned
    max_uploads: int  # uploads in flight at once; more are refused with 503


class Uploads:
    """The upload slots and the threads that run them, apart from every other request."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.in_flight = 0
        self.pool = ThreadPoolExecutor(limits.max_uploads, thread_name_prefix="metanode-upload")


LIMITS = web.AppKey("limits", Uploads)
AUTH_FAILURES = web.AppKey("auth_failures", AuthFailures)


class InFlight:
    """Requests being handled, so a stopping service can wait for them."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()


INFLIGHT = web.AppKey("inflight", InFlight)

# No bearer token in a header: health, public keys, and the sealed tunnel, whose token
# travels inside the seal (service/sealed_api.py).
OPEN_PATHS = frozenset({"/health", "/v1/keys", "/v1/sealed"})
_BLOCK_ID = re.compile(r"[0-9a-f-]{36}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_LOCAL_PATH = re.compile(r"(?<![\w.:/])/[^\s'\",;()]+")


def public_text(text: str) -> str:
    """``text`` without local file-system paths: a client learns nothing of the host."""
    return _LOCAL_PATH.sub("<path>", text)


def error_body(exc: MetanodeError | str) -> dict[str, str]:
    """What a client is told of an error: its text without local paths, its reference."""
    reference = exc.reference if isinstance(exc, MetanodeError) else ""
    return {"error": public_text(str(exc)), "reference": reference}


def _error(status: int, exc: MetanodeError | str, **headers: str) -> web.Response:
    return web.json_response(error_body(exc), status=status, headers=headers or None)


def status_for(exc: MetanodeError) -> int:
    if isinstance(exc, BodyStalled):
        return 408
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
    request.app[STARTED].add(id(request.protocol))
    if request.path not in OPEN_PATHS:
        # aiohttp decodes header bytes that are not UTF-8 as surrogates: compare the bytes
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        expected = b"Bearer " + request.app[TOKEN]
        if not hmac.compare_digest(given, expected):
            request.app[AUTH_FAILURES].count(request.remote or "", request.method, request.path)
            return _error(401, "missing or wrong bearer token")
    task = asyncio.current_task()
    if task is not None:
        request.app[INFLIGHT].tasks.add(task)
    try:
        return await handler(request)
    except MetanodeError as exc:
        return _error(status_for(exc), exc)
    except web.HTTPException as exc:  # the router's 404 and 405: JSON like every error
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason, **_allow_header(exc))
    finally:
        if task is not None:
            request.app[INFLIGHT].tasks.discard(task)


def _allow_header(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


# Connections whose first request head has arrived, by id (runner._with_header_deadline).
STARTED = web.AppKey("started_connections", set[int])


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
    uploads = request.app[LIMITS]
    limit = uploads.limits.max_body
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"request body exceeds the limit of {limit:,} bytes")
    if uploads.in_flight >= uploads.limits.max_uploads:
        return _error(
            503,
            f"{uploads.in_flight} uploads are in flight, the most allowed",
            **{"Retry-After": "1"},
        )
    loop = asyncio.get_running_loop()
    reader = RequestBodyReader(request, loop, limit, uploads.limits.body_timeout)
    name = request.query.get("name", "")
    uploads.in_flight += 1
    try:
        block = await loop.run_in_executor(
            uploads.pool, partial(request.app[NODE].store, cast(BinaryIO, reader), name)
        )
    finally:
        uploads.in_flight -= 1
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


def public_status(node: Node) -> dict[str, Any]:
    """The node's status as a client may see it: provider errors without local paths."""
    report = node.status().to_dict()
    for provider in report["providers"]:
        provider["error"] = public_text(provider["error"])
    return report


async def status(request: web.Request) -> web.Response:
    return web.json_response(await _run(request, public_status, request.app[NODE]))


async def metrics(request: web.Request) -> web.Response:
    node = request.app[NODE]
    snapshot = await _run(request, node.metrics.snapshot)
    stats = await _run(request, node.blockmap.stats)
    return web.Response(
        body=prometheus.exposition(snapshot, stats),
        headers={"Content-Type": prometheus.CONTENT_TYPE},
    )


async def _plain_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = "metanode"  # no Python or aiohttp versions to look up


async def _stop_upload_pool(app: web.Application) -> None:
    app[LIMITS].pool.shutdown(wait=False, cancel_futures=True)


def make_app(node: Node, token: bytes, limits: Limits) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=1024**2)
    app[NODE] = node
    app[TOKEN] = token
    app[LIMITS] = Uploads(limits)
    app[INFLIGHT] = InFlight()
    app[STARTED] = set()
    app[AUTH_FAILURES] = AuthFailures(
        lambda detail: node.audit.record("auth_failure", "", DENIED, detail)
    )
    app.on_response_prepare.append(_plain_server_header)
    app.on_cleanup.append(_stop_upload_pool)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/blocks", store)
    app.router.add_get("/v1/blocks/{block_id}", retrieve, allow_head=False)
    app.router.add_head("/v1/blocks/{block_id}", head)
    app.router.add_delete("/v1/blocks/{block_id}", delete)
    app.router.add_post("/v1/blocks/{block_id}/verify", verify)
    app.router.add_get("/v1/status", status)
    app.router.add_get("/metrics", metrics)
    return app
