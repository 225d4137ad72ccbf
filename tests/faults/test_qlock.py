"""QLOCK leases between processes: a SIGKILLed or stopped holder is taken over, the
fencing token grows, and a holder that lost its lease cannot write the map."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metanode_storage import Node, Secret
from metanode_storage.blockmap.leases import LeaseTable
from metanode_storage.engine.qlock import TTL_ENV
from metanode_storage.errors import NodeBusy
from tests.conftest import PASSPHRASE, CliRunnerFn

# A holder in its own process: takes the blocks lock exclusively, says so with its
# fencing token, then on each line of stdin writes the map under the lease and reports.
_HOLDER = """
import json, sys
from metanode_storage import Node, Secret
from metanode_storage.errors import LeaseLost
node = Node.open(sys.argv[1], Secret(sys.argv[2].encode()))
with node.lock.exclusive("hold for the test"):
    print(json.dumps({"token": node.lock.token}), flush=True)
    for _ in sys.stdin:
        try:
            node.blockmap.mark_audited([sys.argv[3]])
            print(json.dumps({"wrote": True}), flush=True)
        except LeaseLost as exc:
            print(json.dumps({"wrote": False, "error": str(exc)}), flush=True)
"""


@pytest.fixture
def short_ttl(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv(TTL_ENV, "1.5")
    return 1.5


@pytest.fixture
def stored(home: Path) -> str:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        return node.store_bytes(os.urandom(10_000)).block_id


@pytest.fixture
def holder(home: Path, stored: str, short_ttl: float) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(home), PASSPHRASE, stored],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with process:  # closes its pipes
        yield process
        process.kill()


def _read(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the holder exited"
    result: dict[str, object] = json.loads(line)
    return result


def _takeovers(node: Node) -> list[dict[str, object]]:
    return [e.detail for e in node.audit.trail.events(event_type="lock_takeover")]


def test_a_sigkilled_holder_is_taken_over_and_the_token_grows(
    home: Path, holder: subprocess.Popen[str]
) -> None:
    held = _read(holder)["token"]
    assert isinstance(held, int)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.lock.timeout = 0.3
        with pytest.raises(NodeBusy, match="hold for the test"), node.lock.exclusive("gc"):
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        node.lock.timeout = 10
        with node.lock.exclusive("gc"):
            token = node.lock.token
            assert token is not None and token > held
            node.blockmap.mark_audited([])  # a fenced write goes ahead
        taken = _takeovers(node)
    assert [t["token"] for t in taken] == [held]
    assert taken[0]["by_token"] == token


def test_a_stopped_holder_loses_its_lease_at_the_deadline_and_cannot_write(
    home: Path, holder: subprocess.Popen[str], short_ttl: float
) -> None:
    held = _read(holder)["token"]
    assert holder.stdin is not None
    holder.stdin.write("write\n")
    holder.stdin.flush()
    assert _read(holder) == {"wrote": True}  # while its lease stands, it writes
    holder.send_signal(signal.SIGSTOP)  # alive, but renews nothing
    try:
        with Node.open(home, Secret(PASSPHRASE.encode())) as node:
            node.lock.timeout = 10 * short_ttl
            asked = time.monotonic()
            with node.lock.exclusive("gc"):
                waited = time.monotonic() - asked
                token = node.lock.token
            taken = _takeovers(node)
    finally:
        holder.send_signal(signal.SIGCONT)
    assert waited >= short_ttl / 3  # not at once: it waited for the deadline
    assert isinstance(held, int) and token is not None and token > held
    assert [t["token"] for t in taken] == [held]
    holder.stdin.write("write\n")
    holder.stdin.flush()
    answer = _read(holder)
    assert answer["wrote"] is False and f"fencing token {held}" in str(answer["error"])


def test_a_lease_is_renewed_while_the_work_goes_on(home: Path, short_ttl: float) -> None:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        with node.lock.exclusive("long work"):
            time.sleep(3 * short_ttl)
            node.blockmap.mark_audited([])  # still ours: renewed, not taken over
            table = LeaseTable(home / "blockmap.sqlite")
            [(lease, state)] = table.holders()
            table.close()
        assert state == "held" and lease.deadline > time.time()


def test_lock_status_and_an_audited_break(
    home: Path, holder: subprocess.Popen[str], cli: CliRunnerFn
) -> None:
    held = _read(holder)["token"]
    status = cli("storage", "lock", "status", "--json")
    assert status.exit_code == 0
    [lease] = json.loads(status.stdout)["leases"]
    assert lease["token"] == held and lease["mode"] == "exclusive"
    assert lease["holder"] == f"pid {holder.pid} on {os.uname().nodename}"
    assert lease["purpose"] == "hold for the test" and lease["state"] == "held"

    missing = cli("storage", "lock", "break", "backup")
    assert missing.exit_code != 0 and "no lock 'backup' is held" in missing.stderr

    broken = cli("storage", "lock", "break", "blocks", "--json")
    assert broken.exit_code == 0, broken.stderr
    assert [b["token"] for b in json.loads(broken.stdout)["broken"]] == [held]
    assert holder.stdin is not None
    holder.stdin.write("write\n")
    holder.stdin.flush()
    assert _read(holder)["wrote"] is False  # the broken holder finds out, writes nothing
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        [event] = list(node.audit.trail.events(event_type="lock_break"))
        assert event.detail["token"] == held
        assert node.audit.verify().ok


def test_every_event_carries_the_fencing_token_it_was_written_under(
    home: Path, tmp_path: Path, cli: CliRunnerFn
) -> None:
    source = tmp_path / "f"
    for _ in range(2):
        source.write_bytes(os.urandom(5000))
        assert cli("storage", "put", str(source)).exit_code == 0
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        fences = [e.fence for e in node.audit.trail.events(event_type="store")]
    # one CLI run, one lease: each put's event carries its own, later, token
    first, second = fences
    assert first is not None and second is not None and first < second


def test_a_busy_lock_names_its_holder(home: Path, holder: subprocess.Popen[str]) -> None:
    _read(holder)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        node.lock.timeout = 0.2
        with pytest.raises(NodeBusy, match=f"pid {holder.pid}"):
            node.store_bytes(b"waits for the exclusive holder")
