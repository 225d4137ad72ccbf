"""Runs that rewrite the keystore at the same time (token rotation, signing-key rotation,
map backups adding their locators) must never lose each other's change or leave a
keystore that does not open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metanode_storage import Secret
from metanode_storage.crypto.keystore import read_keystore
from tests.conftest import PASSPHRASE, CliRunnerFn

COMMANDS = (("token", "rotate"), ("keys", "rotate"), ("backup-map",))


def test_concurrent_keystore_rewrites_all_land(cli: CliRunnerFn, home: Path) -> None:
    assert cli("storage", "put", "-", stdin=b"something to back up").exit_code == 0
    before = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    env = {**os.environ, "METANODE_HOME": str(home), "METANODE_PASSPHRASE": PASSPHRASE}
    env.pop("METANODE_DEBUG", None)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "metanode_storage", "storage", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
        for command in COMMANDS
    ]
    finished = [run.communicate(timeout=180) for run in runs]  # every pipe read and closed
    for run, (_, err) in zip(runs, finished, strict=True):
        assert run.returncode == 0, err.decode()
    after = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    assert len(after.signing_keys) == len(before.signing_keys) + 2  # both rotations kept
    assert after.api_token != before.api_token
    assert set(after.backup_locators) == {"local-1", "local-2", "local-3"}
    assert after.map_key == before.map_key and after.dedup_key == before.dedup_key
    assert not list(home.glob("*.tmp")) and not list(home.glob(".keystore.mnk.*"))
    assert cli("storage", "audit", "verify").exit_code == 0
