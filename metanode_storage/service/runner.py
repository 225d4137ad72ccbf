"""Running the service in the foreground: bind, serve, repair, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import ssl
from collections.abc import Callable
from functools import partial

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_protocol import RequestHandler

from metanode_storage.engine.node import Node
from metanode_storage.engine.repair import repair
from metanode_storage.engine.repair_defaults import DEFAULT_OFFLINE_GRACE
from metanode_storage.engine.repair_report import SURVEY_EXISTS, SURVEY_NONE
from metanode_storage.errors import MetanodeError, ServiceError
from metanode_storage.service import sealed_api
from metanode_storage.service.api import AUTH_FAILURES, INFLIGHT, STARTED, Limits, make_app
from metanode_storage.service.auth_failures import AuthFailures

log = logging.getLogger("metanode.service")
DEFAULT_MAX_BODY = 64 * 1024**3
DEFAULT_LIMITS = Limits(max_body=DEFAULT_MAX_BODY, body_timeout=30.0, max_uploads=8)
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_REPAIR_INTERVAL = 60.0
_SURVEY_EVERY = 10  # repair passes: every tenth one lists the providers for missing replicas
_DRAIN_SECONDS = 300.0


async def _housekeeping(
    node: Node, failures: AuthFailures, interval: float, offline_grace: float, repairs: bool
) -> None:
    """On a timer: with backups on, probe and repair (the backup manager); in any case,
    audit the interval's authentication failures, back the map up after changes and
    checkpoint the audit trail onto the providers."""
    loop = asyncio.get_running_loop()
    passes = 0
    while True:
        await asyncio.sleep(interval)
        try:
            if repairs:
                await loop.run_in_executor(None, node.status)  # probes keep health current
                survey = SURVEY_EXISTS if passes % _SURVEY_EVERY == 0 else SURVEY_NONE
                passes += 1
                report = await loop.run_in_executor(
                    None, partial(repair, node, survey=survey, offline_grace=offline_grace)
                )
                if report.actions:
                    log.info("repair: %d repaired, %d failed", report.repaired, report.failed)
            await loop.run_in_executor(None, failures.flush)
            await loop.run_in_executor(None, node.housekeeping)
        except MetanodeError as exc:
            log.warning("housekeeping failed: %s", exc)
        except Exception:  # a bug: log it, keep the service alive
            log.exception("housekeeping crashed")


class QuietAccessLog(AbstractAccessLogger):
    """One line per request without the query string: it can carry a file name (which
    lives only in the sealed map) or a token someone put in a URL."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %d %.3fs",
            request.remote or "-",
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _with_header_deadline(
    server: web.Server, started: set[int], seconds: float, loop: asyncio.AbstractEventLoop
) -> Callable[[], asyncio.Protocol]:
    """A protocol factory whose connections are closed if no complete request head has
    arrived within ``seconds`` (aiohttp has no such limit: slow-header clients would
    keep their sockets for ever)."""

    def close_if_idle(handler: RequestHandler) -> None:
        if id(handler) in started:
            started.discard(id(handler))
        elif handler.transport is not None:
            handler.transport.close()

    def make() -> asyncio.Protocol:
        handler = server()
        loop.call_later(seconds, close_if_idle, handler)
        return handler

    return make


async def serve(
    node: Node,
    host: str,
    port: int,
    *,
    backup_enabled: bool,
    limits: Limits = DEFAULT_LIMITS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    repair_interval: float = DEFAULT_REPAIR_INTERVAL,
    offline_grace: float = DEFAULT_OFFLINE_GRACE,
    tls: ssl.SSLContext | None = None,
    ready: Callable[[str], None] = lambda _: None,
) -> None:
    app = make_app(node, node.keys.api_token.reveal(), limits)
    sealed_api.install(app, node, over_tls=tls is not None)
    runner = web.AppRunner(
        app, access_log=log, access_log_class=QuietAccessLog, handle_signals=False
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    assert runner.server is not None
    try:
        listener = await loop.create_server(
            _with_header_deadline(runner.server, app[STARTED], header_timeout, loop),
            host,
            port,
            ssl=tls,
            # the header deadline covers the handshake too: a client that never finishes
            # it is closed after header_timeout, like one that never sends its request
            ssl_handshake_timeout=header_timeout if tls else None,
        )
    except OSError as exc:
        await runner.cleanup()
        raise ServiceError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "choose another --port, or stop what holds it",
        ) from None
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    manager = asyncio.create_task(
        _housekeeping(
            node, app[AUTH_FAILURES], repair_interval, offline_grace, repairs=backup_enabled
        )
    )
    ready(f"listening on {'https' if tls else 'http'}://{host}:{port}")
    await stop.wait()
    log.info("stopping: refusing new requests, finishing %d in flight", len(app[INFLIGHT].tasks))
    listener.close()  # no new connections
    manager.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await manager
    pending = list(app[INFLIGHT].tasks)
    if pending:
        await asyncio.wait(pending, timeout=_DRAIN_SECONDS)
    await runner.cleanup()
    app[AUTH_FAILURES].flush()  # the last interval's refusals, before the node closes
    log.info("stopped")
