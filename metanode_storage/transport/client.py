"""The remote client: put, get, ls, verify and status against a running service.

Everything but the public keys goes through the sealed tunnel (transport/sealed.py,
service/sealed_api.py), streamed both ways in 64 KiB frames, so memory stays flat
for any size. The service's signing key is pinned on first use (or given): it
vouches for the X-Wing transport key and the keys that signed older proofs, and
every retrieved block's proof must hold under them and match the bytes received
before ``get`` reports success.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from metanode_storage.crypto.signing import PublicKey
from metanode_storage.crypto.xwing import XWingRecipient
from metanode_storage.engine.proof import load_proof
from metanode_storage.errors import (
    BlockNotFound,
    ExitCode,
    InputError,
    IntegrityError,
    InvalidSetting,
    KeystoreError,
    MetanodeError,
    NodeBusy,
    SignatureInvalid,
)
from metanode_storage.fileio import atomic_write
from metanode_storage.transport.sealed import (
    FRAME,
    FrameOpener,
    FrameSealer,
    new_request,
    transport_statement,
)

_TIMEOUT = 60.0


class ServiceKeyChanged(KeystoreError):
    """The service answers with another signing key than the one pinned for its URL."""

    reference = "MN-207"


class RemoteRefused(MetanodeError):
    """The service refused the request: a wrong token (exit 4, like a wrong passphrase)."""

    exit_code = ExitCode.KEYSTORE
    reference = "MN-604"


class ServiceUnavailable(MetanodeError):
    """The service did not answer, or broke off (exit 6, like a provider)."""

    exit_code = ExitCode.PROVIDER
    reference = "MN-605"


@dataclass(frozen=True)
class ServiceKeys:
    node_id: str
    signing_key: PublicKey
    trusted: dict[str, PublicKey]  # every key the current one vouches for, by key id
    transport: XWingRecipient


class RemoteService:
    def __init__(
        self,
        url: str,
        token: str,
        pins: Path,
        *,
        cafile: Path | None = None,
        service_key: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidSetting(f"{url!r} is not an http(s) URL", "e.g. https://host:9090")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            raise InvalidSetting(
                f"{url} is plain HTTP to another host: the sealed bodies would be safe, but "
                "the request sizes and timing would not",
                "use https:// (the service's --tls-cert)",
            )
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._host, self._port = parts.hostname, parts.port
        self._tls = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        self._https = parts.scheme == "https"
        self._token = token
        self._pins = pins
        self._given_key = PublicKey.parse(service_key) if service_key else None
        self._keys: ServiceKeys | None = None

    # -- connection and keys

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(
                self._host, self._port, timeout=_TIMEOUT, context=self._tls
            )
        return http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT)

    def keys(self) -> ServiceKeys:
        if self._keys is None:
            self._keys = self._fetch_keys()
        return self._keys

    def _fetch_keys(self) -> ServiceKeys:
        conn = self._connection()
        try:
            conn.request("GET", "/v1/keys")
            response = conn.getresponse()
            doc = json.loads(response.read()) if response.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ServiceUnavailable(f"{self.url} did not answer: {exc}") from None
        finally:
            conn.close()
        if not isinstance(doc, dict):
            raise ServiceUnavailable(f"{self.url} is not a metanode service (no /v1/keys)")
        try:
            signing = PublicKey.parse(str(doc["signing_key"]))
            trusted_texts = [str(k) for k in doc["signing_keys"]]
            recipient_text = str(doc["transport_recipient"])
            statement = transport_statement(str(doc["node_id"]), recipient_text, trusted_texts)
            ml_dsa = bytes.fromhex(doc["ml_dsa_signature"]) if doc["ml_dsa_signature"] else None
            holds = signing.verify(statement, bytes.fromhex(doc["signature"]), ml_dsa)
        except (KeyError, TypeError, ValueError):
            raise SignatureInvalid(f"{self.url} sent malformed keys") from None
        if not holds:
            raise SignatureInvalid(f"{self.url}'s transport key is not signed by its signing key")
        self._check_pin(str(doc["node_id"]), signing)
        trusted = {k.key_id: k for k in map(PublicKey.parse, trusted_texts)}
        return ServiceKeys(
            str(doc["node_id"]), signing, trusted, XWingRecipient.parse(recipient_text)
        )

    def _check_pin(self, node_id: str, signing: PublicKey) -> None:
        """Trust on first use, or the key given; a changed key is refused."""
        pins = _load_pins(self._pins)
        pinned = pins.get(self.url)
        if self._given_key is not None:
            if self._given_key != signing:
                raise ServiceKeyChanged(
                    f"{self.url} signs with key {signing.key_id}, not the one given "
                    f"({self._given_key.key_id})",
                    "check that the URL names the right node",
                )
        elif pinned is not None and pinned.get("signing_key") != signing.text():
            raise ServiceKeyChanged(
                f"{self.url} now signs with key {signing.key_id}, not the one pinned on first "
                f"use ({pinned.get('key_id')}): another node, or a rotated key",
                "if the key was rotated, give the new one with --service-key "
                "(`keys show --json` on the node prints it)",
            )
        if pinned is None or pinned.get("signing_key") != signing.text():
            pins[self.url] = {
                "node_id": node_id,
                "key_id": signing.key_id,
                "signing_key": signing.text(),
            }
            self._pins.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(self._pins, json.dumps(pins, indent=1).encode())

    # -- the sealed tunnel

    def call(
        self,
        op: str,
        args: dict[str, Any],
        body: BinaryIO | None = None,
    ) -> tuple[dict[str, Any], FrameOpener, http.client.HTTPConnection]:
        """Send one sealed operation; its response head, the opener for the data frames
        that may follow, and the connection (close it when done)."""
        request_key, envelope = new_request(self.keys().transport)
        sealer = FrameSealer(request_key, b"up")

        def frames() -> Iterator[bytes]:
            yield envelope
            head = {"token": self._token, "op": op, "args": args}
            yield sealer.head(head, last=body is None)
            if body is not None:
                while piece := body.read(FRAME):
                    yield sealer.frame(piece)
                yield sealer.frame(b"", last=True)

        conn = self._connection()
        try:
            conn.request(
                "POST",
                "/v1/sealed",
                body=frames(),
                headers={"Content-Type": "application/octet-stream"},
                encode_chunked=True,
            )
            response = conn.getresponse()
            if response.status != 200:
                raise _refusal(response.status, _error_text(response.read()))
            opener = FrameOpener(response.read, request_key, b"down")
            head = opener.head()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ServiceUnavailable(f"{self.url}: {exc}") from None
        except BaseException:
            conn.close()
            raise
        if not head.get("ok"):
            conn.close()
            raise _refusal(int(head.get("status", 500)), str(head.get("error", "")))
        return head, opener, conn

    def _simple(self, op: str, args: dict[str, Any], body: BinaryIO | None = None) -> Any:
        head, _, conn = self.call(op, args, body)
        conn.close()
        return head["result"]

    def put(self, stream: BinaryIO, name: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self._simple("put", {"name": name}, stream)
        return result

    def ls(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._simple("ls", {})
        return result

    def verify(self, block_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._simple("verify", {"block_id": block_id})
        return result

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._simple("status", {})
        return result

    def get(self, block_id: str, sink: BinaryIO) -> dict[str, Any]:
        """Stream the block into ``sink``; raises unless its proof holds under the pinned
        key and the bytes match it (so a caller writing a file can discard it)."""
        head, opener, conn = self.call("get", {"block_id": block_id})
        try:
            block = head["result"]
            expected = self._checked_proof(block, block_id)
            digest, size = sha256(), 0
            while piece := opener.next():
                digest.update(piece)
                size += len(piece)
                sink.write(piece)
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceUnavailable(f"{self.url}: {exc}") from None
        finally:
            conn.close()
        if (size, digest.hexdigest()) != expected:
            raise IntegrityError(f"block {block['block_id']} arrived altered: it does not match")
        return dict(block)

    def _checked_proof(self, block: dict[str, Any], asked: str) -> tuple[int, str]:
        try:
            proof = load_proof(block["proof"]["proof"])
        except (KeyError, TypeError, ValueError):
            raise SignatureInvalid("the service sent a block without a readable proof") from None
        if not proof.verify(self.keys().trusted):
            raise SignatureInvalid(
                f"the proof of block {proof.block_id} does not hold under the service's keys"
            )
        if not proof.block_id.startswith(asked) or proof.block_id != block.get("block_id"):
            raise SignatureInvalid("the service answered with another block's proof")
        return proof.size, proof.data_hash


def _load_pins(path: Path) -> dict[str, dict[str, str]]:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InvalidSetting(f"cannot read the pinned service keys {path}: {exc}") from None
    return doc if isinstance(doc, dict) else {}


def _error_text(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))
    except (ValueError, AttributeError):
        return raw[:200].decode(errors="replace")


def _refusal(status: int, text: str) -> MetanodeError:
    """The service's error as ours, with the exit code a local run would give."""
    message = f"the service says: {text}"
    if status == 404:
        return BlockNotFound(message)
    if status in (400, 413):
        return InputError(message)
    if status == 401:
        return RemoteRefused(message, "check METANODE_TOKEN (`token show` on the node)")
    if status == 502:
        return IntegrityError(message)
    if status == 503:
        return NodeBusy(message) if "in flight" in text else ServiceUnavailable(message)
    return MetanodeError(message)
