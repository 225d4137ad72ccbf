"""A rolled-back audit trail is caught, and stays caught: no command adds to it or
publishes over the providers' newer checkpoint until an operator acknowledges the cut,
and the acknowledgement is itself a signed event."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from metanode_storage import Secret
from metanode_storage.crypto.keystore import read_keystore
from metanode_storage.engine.auditing import checkpoint_blob_key
from tests.conftest import PASSPHRASE, CliRunnerFn, provider_dirs

_TRAIL = ("audit.sqlite", "audit.sqlite-wal", "audit.sqlite-shm")


def _checkpoint_blobs(home: Path) -> dict[str, bytes]:
    keys = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    blobs = {}
    for disk in provider_dirs(home):
        key = checkpoint_blob_key(keys, disk.name)
        blobs[disk.name] = (disk / key[:2] / key).read_bytes()
    return blobs


def test_a_rolled_back_trail_is_refused_until_acknowledged(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    kept = cli("storage", "put", "-", stdin=os.urandom(3000)).stdout.strip()
    saved = tmp_path / "old-trail"
    saved.mkdir()
    for name in _TRAIL:
        if (home / name).exists():
            shutil.copy2(home / name, saved / name)
    gone = cli("storage", "put", "-", stdin=os.urandom(3000)).stdout.strip()
    assert cli("storage", "rm", gone).exit_code == 0  # the event a rollback would erase
    for name in _TRAIL:  # roll the trail back to before the put and the rm
        (home / name).unlink(missing_ok=True)
        if (saved / name).exists():
            shutil.copy2(saved / name, home / name)
    published = _checkpoint_blobs(home)

    verify = cli("storage", "audit", "verify")
    assert verify.exit_code == 10 and "cut back" in verify.stdout
    for args in (
        ("storage", "get", kept),
        ("storage", "put", "-"),
        ("storage", "distributed", "audit", "--integrity", "--all"),
    ):
        refused = cli(*args, stdin=b"new data")
        assert refused.exit_code == 10, (args, refused.stderr)
        assert refused.stdout == ""
        line = refused.stderr.strip()
        assert len(line.splitlines()) == 1 and "does not extend" in line and "acknowledge" in line
    env = {**os.environ, "METANODE_HOME": str(home), "METANODE_PASSPHRASE": PASSPHRASE}
    service = subprocess.run(
        [sys.executable, "-m", "metanode_storage", "storage", "distributed", "start",
         "--port", "1"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert service.returncode == 10 and "does not extend" in service.stderr
    assert _checkpoint_blobs(home) == published  # nothing published over the evidence
    assert cli("storage", "audit", "verify").exit_code == 10

    done = cli("storage", "audit", "acknowledge-cut", "--reason", "restored by mistake; checked")
    assert done.exit_code == 0 and "acknowledged the cut" in done.stdout
    assert cli("storage", "get", kept).exit_code == 0  # commands record again
    events = json.loads(
        cli("storage", "audit", "list", "--type", "cut_acknowledged", "--json").stdout
    )
    assert len(events) == 1 and events[0]["detail"]["reason"].startswith("restored by mistake")
    assert set(events[0]["detail"]["notes"]) == {d.name for d in provider_dirs(home)}
    assert cli("storage", "audit", "verify").exit_code == 0


def test_a_damaged_checkpoint_blob_is_reported_and_replaced_not_a_cut(
    cli: CliRunnerFn, home: Path
) -> None:
    """A checkpoint blob that no longer opens (bit rot, a provider that alters it) is no
    evidence of a rolled-back trail: it never stops the node. `audit verify` names it,
    and the next command that records an event writes a good one over it."""
    kept = cli("storage", "put", "-", stdin=os.urandom(3000)).stdout.strip()
    disk = provider_dirs(home)[0]
    keys = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    key = checkpoint_blob_key(keys, disk.name)
    blob = disk / key[:2] / key
    damaged = bytearray(blob.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    blob.write_bytes(bytes(damaged))

    verify = cli("storage", "audit", "verify")
    assert verify.exit_code == 10
    assert f"checkpoint on provider {disk.name}" in verify.stdout and "damaged" in verify.stdout
    got = cli("storage", "get", kept)
    assert got.exit_code == 0, got.stderr
    assert "damaged" in got.stderr  # a warning names it
    assert blob.read_bytes() != bytes(damaged)  # replaced by this run's checkpoint
    assert cli("storage", "audit", "verify").exit_code == 0
