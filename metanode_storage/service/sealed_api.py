"""The remote client's endpoint: one sealed tunnel for put, get, ls, verify and status.

``GET /v1/keys`` (no token: these are public) names the node, its signing keys
and the service's X-Wing transport key, signed by the current signing key, so a
client that pinned the signing key can trust the transport key.

``POST /v1/sealed`` carries one operation sealed end to end (transport/sealed.py).
The bearer token travels inside the seal, not in a header, so a recording of
the TLS session does not reveal it even to a later quantum computer; the block
ids, names and data are inside it too. Uploads share the plain API's slots and
size limit.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import asdict
from functools import partial
from typing import Any, BinaryIO, cast

from aiohttp import web

from metanode_storage.crypto.xwing import XWingIdentity
from metanode_storage.engine.node import Node
from metanode_storage.engine.proof import load_proof, proof_document
from metanode_storage.errors import InputError, MetanodeError
from metanode_storage.service.api import (
    AUTH_FAILURES,
    LIMITS,
    NODE,
    TOKEN,
    error_body,
    public_status,
    status_for,
)
from metanode_storage.service.streams import BodyTooLarge, RequestBodyReader, ResponseWriter
from metanode_storage.transport.sealed import (
    TRANSPORT_LABEL,
    FrameOpener,
    FrameSealer,
    OpenedReader,
    SealedStreamBroken,
    SealedWriter,
    envelope_length,
    open_envelope,
    transport_statement,
)

TRANSPORT = web.AppKey("transport", XWingIdentity)
# What protects this answer on its way, for status's TLSLS line: measured, not configured
OVER_TLS = web.AppKey("over_tls", bool)
OPERATIONS = ("put", "get", "ls", "verify", "status")


def transport_identity(node: Node) -> XWingIdentity:
    """The service's X-Wing key: derived from the map key, so it stays the same across
    restarts (a client pins it through the signing key) without a keystore change."""
    return XWingIdentity.derive(node.keys.map_key.reveal(), TRANSPORT_LABEL)


async def keys(request: web.Request) -> web.Response:
    node = request.app[NODE]
    signer = node.keys.signer
    public_keys = sorted(k.text() for k in node.keys.public_keys().values())
    recipient = request.app[TRANSPORT].recipient.text()
    statement = transport_statement(node.settings.node_id, recipient, public_keys)
    ml_dsa = signer.sign_ml_dsa(statement)
    return web.json_response(
        {
            "node_id": node.settings.node_id,
            "signing_key": signer.public.text(),
            "signing_keys": public_keys,
            "transport_recipient": recipient,
            "signature": signer.sign(statement).hex(),
            "ml_dsa_signature": ml_dsa.hex() if ml_dsa else None,
        }
    )


async def sealed(request: web.Request) -> web.StreamResponse:
    loop = asyncio.get_running_loop()
    uploads = request.app[LIMITS]
    try:
        length = envelope_length(await request.content.readexactly(4))
        request_key = open_envelope(
            request.app[TRANSPORT], await request.content.readexactly(length)
        )
    except (asyncio.IncompleteReadError, MetanodeError):
        request.app[AUTH_FAILURES].count(request.remote or "", request.method, request.path)
        # like a wrong token: whoever sent it does not hold a key this service accepts
        refusal = SealedStreamBroken("not a sealed request for this service")
        return web.json_response(error_body(refusal), status=401)
    body = RequestBodyReader(request, loop, uploads.limits.max_body, uploads.limits.body_timeout)
    opener = FrameOpener(body.read, request_key, b"up")
    sealer = FrameSealer(request_key, b"down")
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    out = ResponseWriter(response, loop)
    if uploads.in_flight >= uploads.limits.max_uploads:
        await loop.run_in_executor(None, _refuse, out, sealer, "too many uploads in flight")
    else:
        uploads.in_flight += 1
        try:
            await loop.run_in_executor(
                uploads.pool, partial(_serve, request.app, opener, sealer, out, request.remote)
            )
        finally:
            uploads.in_flight -= 1
    await response.write_eof()
    return response


def _refuse(out: ResponseWriter, sealer: FrameSealer, why: str) -> None:
    out.write(sealer.head(_error(503, why), last=True))


def _serve(
    app: web.Application,
    opener: FrameOpener,
    sealer: FrameSealer,
    out: ResponseWriter,
    remote: str | None,
) -> None:
    """One sealed operation, on a worker thread: read the head, check the token, run it.
    An error once data has started leaves the response without its last frame, which the
    client reports as a stream cut short."""
    node = app[NODE]
    try:
        head = opener.head()
        given = str(head.get("token", "")).encode()
        if not hmac.compare_digest(given, app[TOKEN]):
            app[AUTH_FAILURES].count(remote or "", "SEALED", str(head.get("op", ""))[:20])
            out.write(sealer.head(_error(401, "missing or wrong bearer token"), last=True))
            return
        op, args = head.get("op"), head.get("args") or {}
        if op not in OPERATIONS or not isinstance(args, dict):
            raise InputError(f"unknown operation {op!r}")
        if op == "get":
            _get(node, str(args.get("block_id", "")), sealer, out)
            return
        result = _run(node, op, args, OpenedReader(opener))
        if op == "status":
            carrier = "TLS 1.3 (X25519)" if app[OVER_TLS] else "plain HTTP on loopback"
            result["tlsls"]["transport"] = f"{carrier} with X-Wing-sealed bodies (this answer)"
        out.write(sealer.head({"ok": True, "status": 200, "result": result}, last=True))
    except (SealedStreamBroken, BodyTooLarge) as exc:
        out.write(sealer.head(_error(400, exc), last=True))
    except MetanodeError as exc:
        out.write(sealer.head(_error(status_for(exc), exc), last=True))


def _run(node: Node, op: str, args: dict[str, Any], body: OpenedReader) -> Any:
    if op == "put":
        return node.store(cast(BinaryIO, body), str(args.get("name", ""))).to_dict()
    if op == "ls":
        return [b.summary() for b in node.blocks()]
    if op == "verify":
        return asdict(node.verify(str(args.get("block_id", ""))))
    return public_status(node)


def _get(node: Node, block_id: str, sealer: FrameSealer, out: ResponseWriter) -> None:
    if node.size_and_kind(block_id)[1]:
        raise InputError("a directory tree cannot be retrieved remotely yet")
    block = node.describe(block_id)
    proof = proof_document(load_proof(block.proof), node.settings.node_id)
    out.write(
        sealer.head({"ok": True, "status": 200, "result": {**block.to_dict(), "proof": proof}})
    )
    writer = SealedWriter(sealer, out.write)
    try:
        node.retrieve(block.block_id, cast(BinaryIO, writer))
    except MetanodeError:
        return  # data has gone out: no last frame, so the client sees the stream cut short
    writer.finish()


def _error(status: int, exc: MetanodeError | str) -> dict[str, Any]:
    return {"ok": False, "status": status, **error_body(exc)}


def install(app: web.Application, node: Node, over_tls: bool) -> None:
    app[TRANSPORT] = transport_identity(node)
    app[OVER_TLS] = over_tls
    app.router.add_get("/v1/keys", keys)
    app.router.add_post("/v1/sealed", sealed)
