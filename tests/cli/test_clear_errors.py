"""Cases that used to end in exit 70 (an internal error) and now get their documented
exit code and one line that says what is wrong."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE, CliRunnerFn

METANODE = shutil.which("metanode") or str(Path(sys.executable).parent / "metanode")


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def _shell(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METANODE_HOME": str(home), "METANODE_PASSPHRASE": PASSPHRASE}
    env.pop("METANODE_DEBUG", None)
    return subprocess.run(
        ["bash", "-c", command.replace("metanode", METANODE, 1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_closed_stdin_and_stdout(cli: CliRunnerFn, home: Path) -> None:
    block_id = cli("storage", "put", "-", stdin=b"hello").stdout.strip()
    put = _shell("metanode storage put - <&-", home)
    assert put.returncode == 7 and "standard input is closed" in _one_line(put.stderr)
    get = _shell(f"metanode storage get {block_id} >&-", home)
    assert get.returncode == 7 and "standard output is closed" in _one_line(get.stderr)
    listing = _shell("metanode storage ls >&-", home)
    assert listing.returncode == 7, listing.stderr
    # the refused get was not even attempted: no retrieve event in the trail
    events = json.loads(cli("storage", "audit", "list", "--type", "retrieve", "--json").stdout)
    assert events == []


def test_block_ids_that_are_not_text_or_not_ids(cli: CliRunnerFn) -> None:
    for bad in ("\udcff\udcfe", "../../etc/passwd", "x" * 500, ""):
        for args in (("storage", "get", bad), ("storage", "rm", bad), ("storage", "verify", bad)):
            result = cli(*args)
            assert result.exit_code == 5, (args, result.stderr)
            assert "no block" in _one_line(result.stderr)


def test_a_unique_prefix_names_a_block_everywhere(cli: CliRunnerFn) -> None:
    ids = [cli("storage", "put", "-", stdin=os.urandom(100)).stdout.strip() for _ in range(3)]
    prefix = ids[0][:8]
    if any(other.startswith(prefix) for other in ids[1:]):
        pytest.skip("random ids share a prefix")  # 1 in 2**32
    assert cli("storage", "verify", prefix).exit_code == 0
    proof = json.loads(cli("storage", "proof", "export", prefix).stdout)
    assert ids[0] in json.dumps(proof)
    assert cli("storage", "get", ids[0][:3]).exit_code == 5  # too short to be taken as a prefix
    removed = cli("storage", "rm", prefix)
    assert removed.exit_code == 0 and ids[0] in removed.stderr
    assert cli("storage", "get", ids[0]).exit_code == 5
    assert cli("storage", "get", ids[1]).exit_code == 0


def test_ls_shows_ids_whole_in_a_narrow_terminal(
    cli: CliRunnerFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_id = cli("storage", "put", "-", stdin=b"x" * 10).stdout.strip()
    monkeypatch.setenv("COLUMNS", "80")
    assert block_id in cli("storage", "ls").stdout


def test_home_that_is_a_file(cli: CliRunnerFn, tmp_path: Path) -> None:
    stray = tmp_path / "a-file"
    stray.write_text("not a directory")
    result = cli("storage", "ls", "--home", str(stray))
    assert result.exit_code == 3
    assert "is a file, not a node home" in _one_line(result.stderr)


def test_config_with_an_unknown_setting_is_named(cli: CliRunnerFn, home: Path) -> None:
    config = home / "config.toml"
    config.write_text(config.read_text().replace("backup_enabled", "backtp_enabled"))
    result = cli("storage", "ls")
    assert result.exit_code == 3
    line = _one_line(result.stderr)
    assert "unknown setting 'backtp_enabled' in [node]" in line and "__init__" not in line


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        (
            "replication_factor = 3",
            'replication_factor = "3"',
            "replication_factor = '3' in [node]",
        ),
        ("encryption = true", "encryption = 1", "encryption = 1 in [node] is not true or false"),
        ('vendor = "local"', "vendor = 7", "vendor = 7 in [[providers]] #1 is not text"),
        ("repack_below = 0.5", "repack_below = true", "repack_below = True in [node]"),
    ],
)
def test_config_with_a_value_of_the_wrong_kind_is_named(
    cli: CliRunnerFn, home: Path, old: str, new: str, named: str
) -> None:
    """A hand edit that puts text where a number goes ended in an internal error."""
    config = home / "config.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new, 1))
    result = cli("storage", "ls")
    assert result.exit_code == 3, result.stderr
    assert named in _one_line(result.stderr)


@pytest.mark.parametrize("name", ["config.toml", "keystore.mnk"])
def test_unreadable_config_or_keystore(cli: CliRunnerFn, home: Path, name: str) -> None:
    target = home / name
    target.unlink()
    target.mkdir()  # EISDIR: unreadable even for root
    result = cli("storage", "ls")
    assert result.exit_code == (3 if name == "config.toml" else 4), result.stderr
    assert "cannot read" in _one_line(result.stderr)


@pytest.mark.parametrize(
    ("field", "value"),
    [("lanes", 0), ("iterations", 0), ("memory_kib", -1), ("memory_kib", 1 << 40)],
)
def test_keystore_header_with_impossible_cost(
    cli: CliRunnerFn, home: Path, field: str, value: int
) -> None:
    path = home / "keystore.mnk"
    raw = path.read_bytes()
    length = int.from_bytes(raw[5:9], "big")
    header = json.loads(raw[9 : 9 + length])
    header[field] = value
    body = json.dumps(header, sort_keys=True).encode()
    path.write_bytes(raw[:5] + len(body).to_bytes(4, "big") + body + raw[9 + length :])
    result = cli("storage", "ls")
    assert result.exit_code == 4, result.stderr
    assert "damaged header" in _one_line(result.stderr)


def test_a_damaged_salt_is_not_called_a_wrong_passphrase(cli: CliRunnerFn, home: Path) -> None:
    path = home / "keystore.mnk"
    raw = path.read_bytes()
    at = raw.index(b'"salt": "') + len(b'"salt": "')
    flipped = b"0" if raw[at : at + 1] != b"0" else b"1"
    path.write_bytes(raw[:at] + flipped + raw[at + 1 :])
    result = cli("storage", "ls")
    assert result.exit_code == 4
    line = _one_line(result.stderr)
    assert "damaged header" in line and "wrong passphrase" not in line


def test_two_passphrase_sources_are_refused(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_file = tmp_path / "passphrase"
    secret_file.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv("METANODE_PASSPHRASE_FILE", str(secret_file))
    result = cli("storage", "ls")  # METANODE_PASSPHRASE is set too
    assert result.exit_code == 4
    assert "given twice" in _one_line(result.stderr)
    monkeypatch.delenv("METANODE_PASSPHRASE")
    assert cli("storage", "ls").exit_code == 0


def test_passphrase_from_a_command(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METANODE_PASSPHRASE")
    secret_file = tmp_path / "vault"
    secret_file.write_text(PASSPHRASE + "\n")
    monkeypatch.setenv("METANODE_PASSCOMMAND", f"cat '{secret_file}'")
    assert cli("storage", "ls").exit_code == 0
    monkeypatch.setenv("METANODE_PASSCOMMAND", "sh -c 'echo the-wrong-one; exit 3'")
    failed = cli("storage", "ls")
    assert failed.exit_code == 4
    line = _one_line(failed.stderr)
    assert "exit code 3" in line and "the-wrong-one" not in line
    monkeypatch.setenv("METANODE_PASSCOMMAND", "no-such-program-here")
    missing = cli("storage", "ls")
    assert missing.exit_code == 4 and "could not be run" in _one_line(missing.stderr)


@pytest.mark.parametrize(
    "command",
    [
        ("storage", "put"),
        ("storage", "verify"),
        ("storage", "get"),
        ("storage", "distributed", "init"),
    ],
)
def test_help_reads_cleanly(cli: CliRunnerFn, command: tuple[str, ...]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "<bool>" not in text  # flags are switches, not values
    assert "{" not in text.splitlines()[0]  # Click-style FILE, not {file}
    assert "directory ." not in text and "(default: $XDG_DATA_HOME" in " ".join(text.split())


def _never_checked(cli: CliRunnerFn) -> int:
    report = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    return int(report["blocks_never_checked"])


def test_status_says_how_old_its_integrity_figure_is(cli: CliRunnerFn) -> None:
    one = cli("storage", "put", "-", stdin=b"one").stdout.strip()
    cli("storage", "put", "-", stdin=b"two")
    before = cli("storage", "distributed", "status")
    assert "2 block(s) never checked" in before.stdout and "status --check" in before.stdout
    report = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert report["blocks_never_checked"] == 2 and report["oldest_check_at"] is None
    assert cli("storage", "verify", one).exit_code == 0  # as full a check as an audit's
    assert _never_checked(cli) == 1
    cli("storage", "put", "-", stdin=b"three")
    assert cli("storage", "verify", "--all").exit_code == 0
    assert _never_checked(cli) == 0
    cli("storage", "put", "-", stdin=b"four")
    checked = cli("storage", "distributed", "status", "--check")
    assert checked.exit_code == 0, checked.stderr
    assert "never checked" not in checked.stdout and "oldest block check" in checked.stdout
    report = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert report["blocks_never_checked"] == 0 and report["oldest_check_at"] is not None
