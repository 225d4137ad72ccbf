"""QLOCK sessions: one unlock, then commands without the passphrase until the session ends.

The agent is a real process behind a real Unix socket; the commands run as the installed
console script would, in fresh processes, with no terminal."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metanode_storage.cli.session_cmd import parse_ttl
from metanode_storage.errors import InputError, LocalStateError
from metanode_storage.session import client
from tests.conftest import PASSPHRASE


@pytest.fixture
def env(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    # short, as a real runtime directory is: a Unix socket path has at most 107 bytes
    runtime = Path(tempfile.mkdtemp(prefix="mn-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))  # for client.* called in the test
    base = {
        k: v for k, v in os.environ.items() if not k.startswith("METANODE_PASS") and k != "HOME"
    }
    yield {**base, "METANODE_HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)}
    client.end(home)  # a failed test leaves no agent behind
    shutil.rmtree(runtime, ignore_errors=True)


def _run(
    env: dict[str, str], *args: str, passphrase: str | None = None
) -> subprocess.CompletedProcess[str]:
    extra = {"METANODE_PASSPHRASE": passphrase} if passphrase else {}
    return subprocess.run(
        [sys.executable, "-m", "metanode_storage", "storage", *args],
        env={**env, **extra},
        stdin=subprocess.DEVNULL,  # no terminal: nobody to prompt
        capture_output=True,
        text=True,
        timeout=120,
    )


def _alive(pid: int) -> bool:
    """Running (an exited agent nobody has reaped yet, a zombie, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_a_session_unlocks_later_commands_until_it_is_ended(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    without = _run(env, "ls")
    assert without.returncode == 4 and "no passphrase given" in without.stderr
    started = _run(env, "session", "start", "--ttl", "10m", "--json", passphrase=PASSPHRASE)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    assert info["active"] and 590 <= info["seconds_left"] <= 600
    sock = client.socket_path(home)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    source = tmp_path / "artifact.bin"
    source.write_bytes(os.urandom(4096))
    put = _run(env, "put", str(source))
    assert put.returncode == 0, put.stderr
    out = tmp_path / "back.bin"
    got = _run(env, "get", put.stdout.strip(), "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == source.read_bytes()
    assert _run(env, "verify", put.stdout.strip()).returncode == 0

    ended = _run(env, "session", "end", "--json")
    assert json.loads(ended.stdout) == {"ended": True}
    deadline = time.monotonic() + 10
    while _alive(info["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(info["pid"]) and not sock.exists()
    after = _run(env, "ls")
    assert after.returncode == 4 and "no passphrase given" in after.stderr
    assert json.loads(_run(env, "session", "status", "--json").stdout) == {"active": False}


def test_a_session_that_expires_mid_script_asks_again(env: dict[str, str]) -> None:
    started = _run(env, "session", "start", "--ttl", "3s", "--json", passphrase=PASSPHRASE)
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    first = _run(env, "ls")
    assert first.returncode == 0, first.stderr  # within the session
    time.sleep(max(0.0, info["expires_at"] - time.time()) + 1.0)
    second = _run(env, "ls")
    assert second.returncode == 4
    assert "no passphrase given" in second.stderr and "session" in second.stderr
    assert not _alive(info["pid"])  # the agent left at its deadline
    assert _run(env, "ls", passphrase=PASSPHRASE).returncode == 0  # the passphrase still works


def test_a_wrong_passphrase_starts_no_session(env: dict[str, str]) -> None:
    started = _run(env, "session", "start", passphrase="not the passphrase")
    assert started.returncode == 4 and "wrong passphrase" in started.stderr
    assert json.loads(_run(env, "session", "status", "--json").stdout) == {"active": False}


def test_a_runtime_directory_others_can_enter_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    (shared / "metanode").mkdir(parents=True, mode=0o755)
    os.chmod(shared / "metanode", 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    with pytest.raises(LocalStateError, match="not a private directory"):
        client.socket_path(tmp_path / "node")


def test_a_socket_path_too_long_for_unix_sockets_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = tmp_path / ("d" * 100)
    deep.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    with pytest.raises(LocalStateError, match="too long"):
        client.socket_path(tmp_path / "node")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("45s", 45), ("30m", 1800), ("1h30m", 5400), ("7d", 604800)]
)
def test_session_lengths(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "1w", "-5m", "8d", "1.5h", "h"])
def test_bad_session_lengths_are_refused(text: str) -> None:
    with pytest.raises(InputError):
        parse_ttl(text)


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_the_agent_does_not_answer_another_user(env: dict[str, str], home: Path) -> None:
    """A peer of another uid that reaches the socket (its permissions loosened by mistake)
    gets no answer: the agent checks the peer's credentials, not only the file modes."""
    started = _run(env, "session", "start", "--ttl", "1m", passphrase=PASSPHRASE)
    assert started.returncode == 0, started.stderr
    sock_path = str(client.socket_path(home))
    private = os.path.dirname(sock_path)
    for directory in (os.path.dirname(private), private):
        os.chmod(directory, 0o711)
    os.chmod(sock_path, 0o666)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become nobody, then connect and ask
        os.close(reader)
        try:
            os.setgid(65534)
            os.setuid(65534)
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.connect(sock_path)
            conn.settimeout(10)
            conn.sendall(b'{"op": "status"}\n')
            os.write(writer, conn.recv(4096) or b"<closed>")
        except OSError as exc:
            os.write(writer, f"<error {exc}>".encode())
        finally:
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader, "rb") as answer:
        got = answer.read()
    os.chmod(private, 0o700)  # private again, or the client refuses the directory
    # it got through to the agent, and the agent hung up without a word (before the
    # question was even sent, when the agent is quick: a broken pipe)
    hung_up = (b"Connection reset by peer", b"Broken pipe")
    assert got == b"<closed>" or any(word in got for word in hung_up), got
    assert client.status(home) is not None  # and the owner is still answered
