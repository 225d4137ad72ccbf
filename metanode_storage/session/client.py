"""Finding, starting, asking and ending the session agent of a node home."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.kdf import KdfParams
from metanode_storage.errors import LocalStateError

_MAX_SOCKET_PATH = 107  # sun_path is 108 bytes on Linux, with its terminating NUL


@dataclass(frozen=True)
class SessionInfo:
    pid: int
    home: str
    started_at: float
    expires_at: float


def runtime_directory(create: bool = True) -> Path:
    """The user's runtime directory (``$XDG_RUNTIME_DIR/metanode``, else
    ``/tmp/metanode-UID``), created 0700 unless ``create`` is off; refused if another
    user owns it or others may enter it, since a socket there would answer with the
    passphrase."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    directory = Path(base) / "metanode" if base else Path(f"/tmp/metanode-{os.getuid()}")
    if create:
        directory.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or stat.S_IMODE(info.st_mode) & 0o077
    ):
        raise LocalStateError(
            f"{directory} is not a private directory of this user",
            "remove it, or set XDG_RUNTIME_DIR to one",
        )
    return directory


def socket_path(home: Path, create: bool = True) -> Path:
    """One agent per node home (the socket name keeps the path of the home private)."""
    digest = sha256(str(home.resolve()).encode()).hexdigest()[:20]
    path = runtime_directory(create) / f"session-{digest}.sock"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise LocalStateError(
            f"the session socket path {path} is too long for a Unix socket",
            "set XDG_RUNTIME_DIR to a shorter directory",
        )
    return path


def _ask(home: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """The agent's reply, or None when no agent answers for this home (looking for one
    creates nothing: a command without a session leaves the runtime directory alone)."""
    try:
        path = socket_path(home, create=False)
    except FileNotFoundError:
        return None  # no runtime directory: no session was ever started
    if not path.exists():
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(30)  # a derive may run Argon2id once
            conn.connect(str(path))
            conn.sendall(json.dumps(request).encode() + b"\n")
            line = conn.makefile("rb").readline()
    except OSError:
        return None  # a stale socket: its agent is gone
    try:
        reply: dict[str, Any] = json.loads(line)
    except ValueError:
        return None
    if "error" in reply:
        raise LocalStateError(f"the session agent refused: {reply['error']}")
    return reply


def status(home: Path) -> SessionInfo | None:
    reply = _ask(home, {"op": "status"})
    if reply is None or reply.get("expires_at", 0) <= time.time():
        return None
    return SessionInfo(
        int(reply["pid"]),
        str(reply["home"]),
        float(reply["started_at"]),
        float(reply["expires_at"]),
    )


class SessionUnlock:
    """What a command needs from a live session: the passphrase, and the keystore's
    Argon2id output without running Argon2id. One round trip per KDF salt: the answer
    is kept for the rest of the command."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._passphrase: Secret | None = None
        self._derived: dict[bytes, bytes] = {}

    def _fetch(self, params: KdfParams) -> bool:
        """Ask the agent for ``params``; False when no agent answers for this home."""
        if params.salt not in self._derived:
            reply = _ask(self._home, {"op": "derive", "kdf": params.as_header()})
            if reply is None:
                return False
            self._passphrase = Secret(bytes.fromhex(reply["passphrase"]))
            self._derived[params.salt] = bytes.fromhex(reply["derived"])
        return True

    def derive(self, params: KdfParams) -> bytes:
        if not self._fetch(params):
            raise LocalStateError("the session ended while the command was unlocking")
        return self._derived[params.salt]

    def passphrase(self, params: KdfParams) -> Secret | None:
        """The session's passphrase, or None when the home has no live session."""
        return self._passphrase if self._fetch(params) else None


def start(home: Path, passphrase: Secret, ttl_seconds: float) -> SessionInfo:
    """Start an agent holding ``passphrase`` for ``ttl_seconds`` (ending any agent this
    home had), and return its status once it answers."""
    end(home)
    path = socket_path(home)
    if path.exists():
        path.unlink()  # stale: nobody answered on it
    deadline = time.time() + ttl_seconds
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "metanode_storage.session.agent",
            str(path),
            repr(deadline),
            str(home.resolve()),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives this command and its terminal
        close_fds=True,
    )
    assert agent.stdin is not None and agent.stdout is not None
    agent.stdin.write(passphrase.reveal().hex().encode() + b"\n")
    agent.stdin.close()
    ready = agent.stdout.readline()
    agent.stdout.close()
    info = status(home) if ready.strip() == b"ready" else None
    if info is None:
        agent.kill()
        raise LocalStateError("the session agent did not start", "run again with --debug")
    return info


def end(home: Path) -> bool:
    """End this home's session; False if there was none."""
    return _ask(home, {"op": "end"}) is not None
