"""A node whose block map or audit trail is gone or damaged refuses to work.

SQLite makes a fresh, empty database out of a missing or 0-byte file. For the
map that used to mean: `ls` shows nothing, `gc` deletes every blob, and the
next store's map backup overwrites the good one. Now every command stops with
exit 9 and points at `recover`, and nothing on the providers changes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from metanode_storage import Secret, init_node
from tests.conftest import PASSPHRASE, CliResult, CliRunnerFn, cheap_kdf, provider_dirs


@pytest.fixture
def default_home(cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A node with the defaults users get (map backups on), for the ``cli`` fixture."""
    path = tmp_path / "default-node"
    init_node(path, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    monkeypatch.setenv("METANODE_HOME", str(path))
    return path


def _provider_state(home: Path) -> dict[str, tuple[int, int]]:
    """Every blob on the local providers with its size and modification time."""
    return {
        str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
        for d in provider_dirs(home)
        for p in d.rglob("*")
        if p.is_file()
    }


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(b"")


def _wal_files(path: Path) -> list[Path]:
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


LOSSES: dict[str, Callable[[Path], None]] = {"deleted": _delete, "emptied": _truncate}


@pytest.mark.parametrize("state_file", ["blockmap.sqlite", "audit.sqlite"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_a_lost_map_or_trail_stops_every_command(
    cli: CliRunnerFn, default_home: Path, state_file: str, loss: str
) -> None:
    stored = [cli("storage", "put", "-", stdin=os.urandom(n)).stdout.strip() for n in (10, 5000)]
    assert all(stored)
    target = default_home / state_file
    LOSSES[loss](target)
    for leftover in _wal_files(target):
        leftover.unlink(missing_ok=True)
    before = _provider_state(default_home)

    for args in (
        ("storage", "ls"),
        ("storage", "verify", "--all"),
        ("storage", "gc"),
        ("storage", "put", "-"),
        ("storage", "get", stored[0]),
        ("storage", "rm", stored[1]),
        ("storage", "repair"),
        ("storage", "backup-map"),
        ("storage", "distributed", "audit", "--integrity", "--all"),
    ):
        result = cli(*args, stdin=b"new data")
        assert result.exit_code == 9, (args, result.exit_code, result.stderr)
        assert result.stdout == ""
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "missing" in message and "recover" in message, message
    # Nothing was created in its place, and no provider blob changed or vanished.
    assert target.stat().st_size == 0 if loss == "emptied" else not target.exists()
    assert _provider_state(default_home) == before


def test_init_creates_both_and_a_fresh_node_works(cli: CliRunnerFn, default_home: Path) -> None:
    assert (default_home / "blockmap.sqlite").stat().st_size > 0
    assert (default_home / "audit.sqlite").stat().st_size > 0
    block = cli("storage", "put", "-", stdin=b"hello").stdout.strip()
    assert cli("storage", "get", block).stdout_bytes == b"hello"
    assert cli("storage", "audit", "verify").exit_code == 0


def _damage(path: Path, offset: int) -> None:
    """Overwrite 64 bytes at ``offset`` (negative: from the end) with garbage."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(offset % size)
        fh.write(b"\xa5" * 64)


@pytest.mark.parametrize("state_file", ["audit.sqlite", "blockmap.sqlite", "metrics.sqlite"])
@pytest.mark.parametrize("offset", [0, 100, 4096, -64])
def test_damaged_local_state_never_ends_in_an_internal_error(
    cli: CliRunnerFn, home: Path, state_file: str, offset: int
) -> None:
    stored = [cli("storage", "put", "-", stdin=os.urandom(n)).stdout.strip() for n in (10, 9000)]
    assert cli("storage", "distributed", "metrics").exit_code == 0  # metrics.sqlite exists
    target = home / state_file
    for wal in _wal_files(target):
        wal.unlink(missing_ok=True)
    _damage(target, offset)

    for args in (
        ("storage", "get", stored[0]),
        ("storage", "put", "-"),
        ("storage", "ls"),
        ("storage", "verify", "--all"),
        ("storage", "distributed", "status"),
        ("storage", "distributed", "metrics"),
        ("storage", "distributed", "audit"),
        ("storage", "audit", "verify"),
        ("storage", "rm", stored[1]),
    ):
        result = cli(*args, stdin=b"more data")
        assert result.exit_code != 70, (args, result.stderr)
        if state_file == "metrics.sqlite":
            # housekeeping: never fails a command, a warning at most
            assert result.exit_code == 0, (args, result.stderr)
        elif result.exit_code != 0:
            assert result.exit_code in (9, 10), (args, result.exit_code, result.stderr)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_init_over_a_node_that_lost_its_config_is_refused(
    cli: CliRunnerFn, default_home: Path
) -> None:
    """A home whose config.toml went missing still holds the node: `init` there replaced
    its keystore, map and trail with a new, empty node's. Now init refuses, naming what the
    home holds, and `recover` into that same home brings the node back."""
    block = cli("storage", "put", "-", stdin=b"kept").stdout.strip()
    keystore = (default_home / "keystore.mnk").read_bytes()
    blobs = _provider_state(default_home)
    (default_home / "config.toml").unlink()
    refused = cli("storage", "distributed", "init")
    assert refused.exit_code == 1, refused.stderr
    assert "config.toml is missing (1 block(s) in its map" in refused.stderr
    assert (default_home / "keystore.mnk").read_bytes() == keystore
    assert _provider_state(default_home) == blobs
    recovered = _recover_into(cli, default_home, provider_dirs(default_home)[0])
    assert recovered.exit_code == 0, recovered.stderr
    assert cli("storage", "get", block).stdout_bytes == b"kept"


def test_an_interrupted_init_can_be_run_again(cli: CliRunnerFn, tmp_path: Path) -> None:
    """What an init killed before its config leaves (keystore, empty map and trail) holds
    nothing: init again makes the node."""
    home = tmp_path / "half-made"
    init_node(home, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    (home / "config.toml").unlink()
    again = cli("storage", "distributed", "init", "--home", str(home))
    assert again.exit_code == 0, again.stderr
    block = cli("storage", "put", "-", "--home", str(home), stdin=b"new").stdout.strip()
    assert cli("storage", "get", block, "--home", str(home)).stdout_bytes == b"new"


def test_recover_refuses_a_home_that_holds_another_node(
    cli: CliRunnerFn, default_home: Path, tmp_path: Path
) -> None:
    """Rebuilding a node in its own home is what `recover --home` is for once config.toml
    is lost; recovering a different node there replaced this one's keystore and map."""
    cli("storage", "put", "-", stdin=b"this node's")
    other = tmp_path / "other-node"
    init_node(other, Secret(PASSPHRASE.encode()), kdf=cheap_kdf())
    cli("storage", "put", "-", "--home", str(other), stdin=b"the other node's")
    keystore = (default_home / "keystore.mnk").read_bytes()
    (default_home / "config.toml").unlink()
    refused = _recover_into(cli, default_home, provider_dirs(other)[0])
    assert refused.exit_code == 1, refused.stderr
    assert "holds another node" in refused.stderr
    assert (default_home / "keystore.mnk").read_bytes() == keystore


def _recover_into(cli: CliRunnerFn, home: Path, provider: Path) -> CliResult:
    """`recover --home HOME` from the local provider directory ``provider``."""
    return cli(
        "storage", "recover", "--name", provider.name, "--vendor", "local",
        "--path", str(provider), "--home", str(home),
    )  # fmt: skip
