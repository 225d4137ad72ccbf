"""The session agent: a process holding one node's passphrase until its deadline.

Started by ``metanode storage session start`` as
``python -m metanode_storage.session.agent SOCKET DEADLINE``; reads the passphrase from
its standard input, in hex (never argv or the environment, which other processes can read),
prints ``ready`` once it listens, and serves JSON lines on the socket:

- ``{"op": "derive", "kdf": HEADER}``: the keystore's 64-byte Argon2id output for those
  KDF parameters (hex; computed once per salt, then cached) and the passphrase (hex),
  which commands that rewrite the keystore need;
- ``{"op": "status"}``: pid, home, started_at, expires_at;
- ``{"op": "end"}``: zero everything and exit.

Only a peer with this process's uid is answered. At the deadline the agent exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import sys
import time
from typing import Any

from metanode_storage.crypto.kdf import KdfParams, derive

_MAX_REQUEST = 64 * 1024


class _Held:
    """The secrets, in mutable buffers so they can be zeroed (best effort: Python may
    have copied them while using them)."""

    def __init__(self, passphrase: bytearray) -> None:
        self.passphrase = passphrase
        self.derived: dict[str, bytearray] = {}

    def derive(self, params: KdfParams) -> bytes:
        key = json.dumps(params.as_header(), sort_keys=True)
        if key not in self.derived:
            self.derived[key] = bytearray(derive(bytes(self.passphrase), params))
        return bytes(self.derived[key])

    def wipe(self) -> None:
        for buffer in [self.passphrase, *self.derived.values()]:
            buffer[:] = bytes(len(buffer))
        self.derived.clear()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _answer(request: dict[str, Any], held: _Held, about: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "status":
        return about
    if op == "derive":
        params = KdfParams.from_header(request["kdf"])
        return {"derived": held.derive(params).hex(), "passphrase": bytes(held.passphrase).hex()}
    if op == "end":
        return {"ended": True}
    return {"error": f"unknown op {op!r}"}


def serve(path: str, deadline: float, home: str, held: _Held) -> None:
    old_umask = os.umask(0o177)  # the socket is created 0600
    try:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
    finally:
        os.umask(old_umask)
    server.listen(16)
    about = {"pid": os.getpid(), "home": home, "started_at": time.time(), "expires_at": deadline}
    print("ready", flush=True)
    try:
        while (left := deadline - time.time()) > 0:
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                break
            with conn:
                if _peer_uid(conn) != os.getuid():
                    continue  # another user: not a word
                conn.settimeout(5)
                try:
                    request = json.loads(conn.makefile("rb").readline(_MAX_REQUEST))
                    reply = _answer(request, held, about)
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    reply = {"error": f"bad request: {exc}"}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")
                if reply.get("ended"):
                    break
    finally:
        held.wipe()
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def main() -> None:
    path, deadline, home = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    passphrase = bytearray.fromhex(sys.stdin.readline().strip())  # hex: any byte may be in it
    sys.stdin.close()
    os.chdir("/")  # hold no directory busy
    serve(path, deadline, home, _Held(passphrase))


if __name__ == "__main__":
    main()
