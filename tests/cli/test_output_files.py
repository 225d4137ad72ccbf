"""`get -o` and `proof export -o` write as `cp` and `curl -o` do: through symlinks, into
FIFOs and devices in place, and only a regular file or a new path through a temporary
file and a rename. No file the user pointed at is ever turned into something else."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import CliRunnerFn


def _get(block_id: str, out: Path | str) -> tuple[str, ...]:
    return ("storage", "get", block_id, "-o", str(out))


def _proof(block_id: str, out: Path | str) -> tuple[str, ...]:
    return ("storage", "proof", "export", block_id, "-o", str(out))


COMMANDS = {"get": _get, "proof": _proof}


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty directory for outputs (tmp_path also holds the node home)."""
    path = tmp_path / "out"
    path.mkdir()
    return path


def _store(cli: CliRunnerFn, data: bytes) -> str:
    result = cli("storage", "put", "-", stdin=data)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def _expected(cli: CliRunnerFn, command: str, block_id: str, data: bytes) -> bytes:
    if command == "get":
        return data
    return cli("storage", "proof", "export", block_id).stdout_bytes


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_symlink_is_written_through_and_stays_a_link(
    cli: CliRunnerFn, out_dir: Path, command: str
) -> None:
    data = os.urandom(20_000)
    block_id = _store(cli, data)
    real = out_dir / "real-file"
    real.write_bytes(b"old")
    os.chmod(real, 0o640)
    link = out_dir / "link"
    link.symlink_to(real)
    result = cli(*COMMANDS[command](block_id, link))
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == _expected(cli, command, block_id, data)
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file keeps its mode
    assert sorted(p.name for p in out_dir.iterdir()) == ["link", "real-file"]  # no temp left


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_fifo_is_written_in_place(cli: CliRunnerFn, out_dir: Path, command: str) -> None:
    data = os.urandom(300_000)
    block_id = _store(cli, data)
    expected = _expected(cli, command, block_id, data)
    fifo = out_dir / "pipe"
    os.mkfifo(fifo)
    received = bytearray()

    def drain() -> None:
        with open(fifo, "rb") as reader:
            received.extend(reader.read())

    reader = threading.Thread(target=drain)
    reader.start()
    result = cli(*COMMANDS[command](block_id, fifo))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert bytes(received) == expected
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file


def test_dev_null_stays_a_device(cli: CliRunnerFn) -> None:
    block_id = _store(cli, os.urandom(5000))
    before = os.stat("/dev/null")
    for args in (COMMANDS["get"](block_id, "/dev/null"), COMMANDS["proof"](block_id, "/dev/null")):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        after = os.stat("/dev/null")
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
        assert after.st_ino == before.st_ino


def test_a_regular_file_is_replaced_whole_and_a_failed_read_keeps_it(
    cli: CliRunnerFn, home: Path, out_dir: Path
) -> None:
    data = os.urandom(50_000)
    block_id = _store(cli, data)
    target = out_dir / "out.bin"
    target.write_bytes(b"previous content")
    assert cli("storage", "get", block_id, "-o", str(target)).exit_code == 0
    assert target.read_bytes() == data
    # every replica corrupt: the read fails, the previous file survives, no temp file is left
    target.write_bytes(b"previous content")
    for blob in (home / "providers").rglob("*"):
        if blob.is_file() and len(blob.name) == 48:
            blob.write_bytes(b"\x01" + b"\x00" * 64)
    failed = cli("storage", "get", block_id, "-o", str(target))
    assert failed.exit_code == 10, failed.stderr
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in out_dir.iterdir()] == ["out.bin"]


def test_a_new_file_gets_the_usual_permissions(cli: CliRunnerFn, out_dir: Path) -> None:
    block_id = _store(cli, b"hello")
    target = out_dir / "new.txt"
    old_umask = os.umask(0o022)
    try:
        assert cli("storage", "get", block_id, "-o", str(target)).exit_code == 0
    finally:
        os.umask(old_umask)
    assert target.read_bytes() == b"hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_a_directory_is_refused(cli: CliRunnerFn, out_dir: Path) -> None:
    block_id = _store(cli, b"hello")
    result = cli("storage", "get", block_id, "-o", str(out_dir))
    assert result.exit_code == 7
    assert "directory" in result.stderr
    assert list(out_dir.iterdir()) == []


def test_output_never_goes_into_the_nodes_own_home_or_providers(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    """cp's rule (an existing file is replaced) let `get -o HOME/keystore.mnk` destroy the
    node. The node's home and local provider directories are refused however they are
    named (through a symlink, with ..), for a file, a tree and the other -o commands."""
    block_id = _store(cli, os.urandom(5000))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_bytes(b"x")
    tree_id = cli("storage", "put", str(tree)).stdout.strip()
    keystore = (home / "keystore.mnk").read_bytes()
    link = tmp_path / "to-home"
    link.symlink_to(home)
    blob = next(p for p in (home / "providers").rglob("*") if p.is_file())
    for args in (
        _get(block_id, home / "keystore.mnk"),
        _get(block_id, link / "blockmap.sqlite"),
        _get(block_id, home / "providers" / ".." / "config.toml"),
        _get(block_id, blob),
        _get(tree_id, home / "restored"),
        ("storage", "get", tree_id, "--path", "tree/f", "-o", str(home / "providers")),
        _proof(block_id, home / "config.toml"),
        ("storage", "audit", "checkpoint", "-o", str(home / "audit.sqlite")),
    ):
        refused = cli(*args)
        assert refused.exit_code == 7, (args, refused.stderr)
        assert "inside this node's home" in refused.stderr
    assert (home / "keystore.mnk").read_bytes() == keystore
    assert not (home / "restored").exists()
    assert cli("storage", "verify", "--all").exit_code == 0  # every blob as it was


@pytest.mark.parametrize(
    "args",
    [
        ("storage", "ls", "--json"),
        ("storage", "ls"),
        ("storage", "distributed", "status"),
        ("storage", "audit", "checkpoint"),
    ],
)
def test_text_output_to_a_full_disk_is_an_output_error(
    cli: CliRunnerFn, home: Path, args: tuple[str, ...]
) -> None:
    """`get > /dev/full` said 'cannot write the output' (exit 7); `ls`, `status` and the
    other text commands ended in an internal OSError (exit 70). A `put` whose id cannot
    be printed names the id on stderr: the block is stored."""
    _store(cli, b"something")
    done = _run_into_dev_full(home, args)
    assert done.returncode == 7, done.stderr
    assert b"cannot write the output: No space left on device" in done.stderr
    assert b"Exception ignored" not in done.stderr


def test_a_put_whose_id_cannot_be_printed_names_it_on_stderr(cli: CliRunnerFn, home: Path) -> None:
    done = _run_into_dev_full(home, ("storage", "put", "-"), b"kept anyway")
    assert done.returncode == 7, done.stderr
    block_id = done.stderr.split(b"stored as ")[1].split(b",")[0].decode()
    assert cli("storage", "get", block_id).stdout_bytes == b"kept anyway"


def _run_into_dev_full(
    home: Path, args: tuple[str, ...], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "METANODE_HOME": str(home)}
    with open("/dev/full", "wb") as full:
        return subprocess.run(
            [sys.executable, "-m", "metanode_storage", *args], input=stdin,
            stdout=full, stderr=subprocess.PIPE, env=env, timeout=120, check=False,
        )  # fmt: skip


def test_a_slow_write_is_handed_to_the_disk_as_it_goes_and_ends_whole(tmp_path: Path) -> None:
    """A long write syncs its pages every 0.2 s on a thread of its own (the final fsync
    then has little left); the thread ends with the write, failed or not."""
    from metanode_storage.fileio import output_file

    target = tmp_path / "slow.bin"
    parts = [os.urandom(64 * 1024) for _ in range(6)]
    with output_file(target) as fh:
        for part in parts:
            fh.write(part)
            fh.flush()
            threading.Event().wait(0.1)  # 0.6 s in all: the flusher runs a few times
        assert any(t.name == "metanode-writeback" for t in threading.enumerate())
    assert target.read_bytes() == b"".join(parts)
    with pytest.raises(RuntimeError), output_file(tmp_path / "failed.bin") as fh:
        fh.write(b"half")
        raise RuntimeError("the read failed")
    assert not (tmp_path / "failed.bin").exists()
    assert not any(t.name == "metanode-writeback" for t in threading.enumerate())
