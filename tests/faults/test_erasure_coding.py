"""`ec:3+2` on five providers (three local directories, the S3 server and the Azure
server, real protocol servers on 127.0.0.1): any two down and reads stay exact, a
corrupt fragment is found and rebuilt, a lost provider's share is repaired, and a
SIGKILLed encoded store leaves only whole blocks."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from metanode_storage import Node, Secret
from metanode_storage.engine.backup import recover_home
from metanode_storage.engine.erasure import fragment_index
from metanode_storage.engine.reader import CORRUPT
from metanode_storage.engine.repair import repair
from metanode_storage.providers.fsspec_store import LocalBlobStore
from metanode_storage.redundancy import Redundancy
from tests.conftest import (
    PASSPHRASE,
    cloud_node,
    data_blobs,
    named_blob_keys,
)
from tests.kill_runs import assert_only_whole_blocks, kill_stores_at_random
from tests.servers import ServerProcess

LOCAL = ("local-a", "local-b", "local-c")
CLOUD = ("s3", "azure")
EC_3_2 = Redundancy.erasure(3, 2)


@pytest.fixture
def servers(
    s3_server: ServerProcess, azure_server: ServerProcess
) -> Iterator[dict[str, ServerProcess]]:
    running = {"s3": s3_server, "azure": azure_server}
    yield running
    for server in running.values():  # a test that killed one leaves it running again
        if server.process is None:
            server.start()


@pytest.fixture
def ec_home(tmp_path: Path, servers: dict[str, ServerProcess]) -> Path:
    return cloud_node(tmp_path, servers, LOCAL, redundancy=EC_3_2)[0]


def _local_blobs(home: Path) -> list[Path]:
    """The chunk blobs on the three local providers."""
    return [p for name in LOCAL for p in data_blobs(home, home.parent / name)]


def _open(home: Path) -> Node:
    return Node.open(home, Secret(PASSPHRASE.encode()))


def _samples() -> dict[str, bytes]:
    rng = random.Random(7)
    text = b"".join(b"line %d of a log file\n" % i for i in range(120_000))
    return {
        "empty": b"",
        "tiny": b"hello",
        "small": rng.randbytes(4096),
        "several-chunks": rng.randbytes(3 * 1024 * 1024) + text,
    }


def _store_samples(home: Path) -> dict[str, bytes]:
    """block id -> bytes, every chunk written as five fragments on five providers."""
    stored = {}
    with _open(home) as node:
        for name, data in _samples().items():
            stored[node.store_bytes(data, name).block_id] = data
        for chunk in node.blockmap.chunks():
            assert (chunk.needed, chunk.wanted) == (3, 5)
            assert sorted(r.fragment for r in chunk.replicas) == [0, 1, 2, 3, 4]
            assert len({r.provider for r in chunk.replicas}) == 5
    return stored


def _take_down(home: Path, name: str, servers: dict[str, ServerProcess]) -> None:
    if name in servers:
        servers[name].kill()  # SIGKILL; moto keeps its objects in memory: they are gone too
    else:
        path = home.parent / name
        shutil.move(path, path.with_name(f"{name}.unplugged"))


def _bring_back(home: Path, name: str, servers: dict[str, ServerProcess]) -> None:
    if name in servers:
        servers[name].start()
    else:
        path = home.parent / name
        shutil.move(path.with_name(f"{name}.unplugged"), path)


@pytest.mark.parametrize("down", list(itertools.combinations(LOCAL + CLOUD, 2)), ids="+".join)
def test_any_two_providers_down_reads_stay_exact_and_repair_makes_it_whole(
    ec_home: Path, servers: dict[str, ServerProcess], down: tuple[str, str]
) -> None:
    stored = _store_samples(ec_home)
    for name in down:
        _take_down(ec_home, name, servers)
    with _open(ec_home) as node:
        for block_id, data in stored.items():
            assert node.retrieve_bytes(block_id) == data
        status = node.status(probe_offline=True)
        assert status.redundancy == "ec:3+2"
        assert status.survivable_losses == 0  # two down: one more loss would lose data
        out_of_reach = sum(r.provider in down for c in node.blockmap.chunks() for r in c.replicas)
        assert status.unreachable_replicas == out_of_reach > 0  # 'healthy' alone said all
    for name in down:
        _bring_back(ec_home, name, servers)
    with _open(ec_home) as node:
        for name in set(down) & set(CLOUD):
            # A SIGKILLed moto (memory) or Azurite (its last writes unflushed) can come back
            # without the bucket: the operator makes it again, and repair refills it.
            node.providers[name].create_bucket()
        node.status(probe_offline=True)
        report = repair(node)  # the survey finds whatever the outage lost (moto's objects)
        assert report.failed == 0 and report.lost == 0
        for block_id, data in stored.items():
            assert node.verify(block_id).ok
            assert node.retrieve_bytes(block_id) == data
        status = node.status(probe_offline=True)
        assert status.survivable_losses == 2 and status.short_chunks == 0
        assert status.unreachable_replicas == 0
        if "s3" in down:  # the restarted S3 server came back empty: its share was rebuilt
            assert report.repaired >= 1 and report.found_missing >= 1
            assert {r.provider for c in node.blockmap.chunks() for r in c.replicas} >= {"s3"}


def test_three_providers_down_is_a_clear_outage_not_wrong_bytes(
    ec_home: Path, servers: dict[str, ServerProcess]
) -> None:
    stored = _store_samples(ec_home)
    for name in ("local-a", "local-b", "azure"):
        _take_down(ec_home, name, servers)
    try:
        with _open(ec_home) as node:
            big = next(b for b, d in stored.items() if len(d) > 1_000_000)
            with pytest.raises(Exception, match="no good 3 fragments") as raised:
                node.retrieve_bytes(big)
            assert "azure" in str(raised.value) or "local-a" in str(raised.value)
            assert node.status(probe_offline=True).survivable_losses == -1
    finally:
        for name in ("local-a", "local-b", "azure"):
            _bring_back(ec_home, name, servers)


def test_a_corrupt_fragment_is_detected_and_rebuilt(ec_home: Path) -> None:
    stored = _store_samples(ec_home)
    with _open(ec_home) as node:
        chunk = max(node.blockmap.chunks(), key=lambda c: c.plain_size)
        victim = next(r for r in chunk.replicas if r.provider == "local-b")
        (pack,) = [p for p in _local_blobs(ec_home) if p.name == victim.key]
        body = bytearray(pack.read_bytes())
        body[victim.offset + victim.size // 2] ^= 1
        pack.write_bytes(bytes(body))
        block_id = next(b for b, d in stored.items() if len(d) > 1_000_000)
        result = node.verify(block_id)
        assert result.ok  # still readable: four good fragments of five
        assert [(f.provider, f.state) for f in result.faults] == [("local-b", CORRUPT)]
        assert node.retrieve_bytes(block_id) == stored[block_id]
        assert node.status().survivable_losses == 1
        report = repair(node)
        assert report.repaired == 1 and report.failed == 0
        (action,) = report.actions
        assert action.reasons == {"local-b": "corrupt"}
        healed = node.blockmap.get_chunk(chunk.chunk_id)
        assert healed is not None
        new = next(r for r in healed.replicas if r not in chunk.replicas)
        assert new.fragment == victim.fragment  # the same fragment, rebuilt
        _check, fragment = node.reader.check_replica(healed, new)
        assert fragment is not None and fragment_index(fragment) == victim.fragment
        assert node.verify(block_id).ok and not node.verify(block_id).faults
        assert node.status().survivable_losses == 2


def test_providers_see_only_opaque_padded_fragments(ec_home: Path) -> None:
    stored = _store_samples(ec_home)
    blobs = _local_blobs(ec_home)
    with _open(ec_home) as node:
        assert {p.name for p in blobs} <= named_blob_keys(node)
    magic = (0xB0C5ECC).to_bytes(4, "little")  # liberasurecode's fragment header magic
    for blob in blobs:
        body = blob.read_bytes()
        assert magic not in body  # every fragment header is inside a seal
        assert len(body) >= 4096  # at least one minimal pack
        for data in stored.values():
            if len(data) >= 64:
                assert data[:64] not in body


_PUT_SCRIPT = """
import os, sys
from metanode_storage import Node, Secret
with Node.open(None, Secret(os.environ["METANODE_PASSPHRASE"].encode())) as node:
    print(node.store_bytes(open(sys.argv[1], "rb").read()).block_id, flush=True)
"""


def test_sigkill_during_an_encoded_store_leaves_whole_blocks_only(
    ec_home: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, METANODE_HOME=str(ec_home), METANODE_PASSPHRASE=PASSPHRASE)
    source = tmp_path / "big.bin"

    def put() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-c", _PUT_SCRIPT, str(source)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    reported, attempted = kill_stores_at_random(put, source, 4, 12 * 1024 * 1024)
    with _open(ec_home) as node:
        assert_only_whole_blocks(node, reported, attempted)
        node.collect_garbage()
        local = {p.name for p in _local_blobs(ec_home)}
        assert local <= named_blob_keys(node)  # the killed runs' local orphans are gone


def test_a_lost_machine_and_two_lost_disks_recover_from_the_three_left(ec_home: Path) -> None:
    """The map backups and the fragments both survive two lost providers: with the node's
    home and two of its local disks gone, the node comes back from one provider's map
    backup and reads every block from the three providers left."""
    stored = _store_samples(ec_home)
    shutil.rmtree(ec_home)
    for name in ("local-a", "local-b"):
        shutil.rmtree(ec_home.parent / name)
    rebuilt = ec_home.parent / "rebuilt"
    survivor = LocalBlobStore("local-c", str(ec_home.parent / "local-c"))
    recovered = recover_home(rebuilt, Secret(PASSPHRASE.encode()), survivor)
    assert "blockmap.sqlite" in recovered.files
    with _open(rebuilt) as node:
        assert node.settings.scheme == EC_3_2
        for block_id, data in stored.items():
            assert node.retrieve_bytes(block_id) == data
        assert node.status(probe_offline=True).survivable_losses == 0
        assert node.audit.verify().ok  # the trail, against every checkpoint still held


def test_trees_and_batches_read_fragments_pack_by_pack_through_faults(
    ec_home: Path, servers: dict[str, ServerProcess], tmp_path: Path
) -> None:
    """A tree restore and a `retrieve_many` fetch erasure-coded chunks' fragments pack by
    pack; with one provider down and every fragment on another corrupt, not a byte
    changes, and the corrupt fragments the reads met are reported."""
    rng = random.Random(11)
    source = tmp_path / "tree"
    files = {}
    for i in range(60):
        path = source / f"d{i % 4}" / f"file-{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        files[path.relative_to(source)] = rng.randbytes(rng.choice([100, 4096, 70_000]))
        path.write_bytes(files[path.relative_to(source)])
    singles = {f"o{i}": rng.randbytes(3000) for i in range(40)}
    with _open(ec_home) as node:
        tree_block, _ = node.store_tree([source])
        ids = [b.block_id for b in node.store_many(singles.items())]
        on_local_c = [
            r for c in node.blockmap.chunks() for r in c.replicas if r.provider == "local-c"
        ]
    packs = {p.name: p for p in _local_blobs(ec_home)}
    for fragment in on_local_c:  # every fragment local-c holds is corrupt
        body = bytearray(packs[fragment.key].read_bytes())
        body[fragment.offset + 40] ^= 0x10
        packs[fragment.key].write_bytes(bytes(body))
    _take_down(ec_home, "azure", servers)
    with _open(ec_home) as node:
        node.retrieve_tree(tree_block.block_id, tmp_path / "restored")
        for rel, data in files.items():
            assert (tmp_path / "restored" / "tree" / rel).read_bytes() == data
        assert node.retrieve_many(ids) == list(singles.values())
        # Each batch read local-c's fragments when it ranked in the first three, found them
        # corrupt, and read again; a batch whose random order put it last never read it.
        reported = {(provider, kind) for _, provider, kind in node.blockmap.faults()}
        assert reported <= {("local-c", CORRUPT)}
        checked = node.verify(ids[5])  # reads every fragment
        assert checked.ok and [(f.provider, f.state) for f in checked.faults] == [
            ("local-c", CORRUPT)
        ]
        reported = {(provider, kind) for _, provider, kind in node.blockmap.faults()}
        assert reported == {("local-c", CORRUPT)}


def test_repair_rebuilds_a_lost_share_past_fragments_it_did_not_know_were_corrupt(
    ec_home: Path,
) -> None:
    """Repair gathers good fragments pack by pack; where one it picked turns out corrupt
    (not yet found by any check), that chunk is rebuilt from the others instead."""
    stored = _store_samples(ec_home)
    with _open(ec_home) as node:
        on_local_c = [
            r for c in node.blockmap.chunks() for r in c.replicas if r.provider == "local-c"
        ]
    packs = {p.name: p for p in _local_blobs(ec_home)}
    for fragment in on_local_c:  # silently corrupt: no verify has seen it
        body = bytearray(packs[fragment.key].read_bytes())
        body[fragment.offset + 40] ^= 0x01
        packs[fragment.key].write_bytes(bytes(body))
    for blob in data_blobs(ec_home, ec_home.parent / "local-a"):
        blob.unlink()  # local-a loses everything
    with _open(ec_home) as node:
        report = repair(node)
        assert report.found_missing == report.repaired == node.blockmap.stats().chunks
        assert report.failed == 0
        for block_id, data in stored.items():
            assert node.retrieve_bytes(block_id) == data
        for block_id in stored:  # local-a's share is back; local-c's is still bad
            assert {(f.provider, f.state) for f in node.verify(block_id).faults} <= {
                ("local-c", CORRUPT)
            }
        again = repair(node)  # verify put local-c's fragments in the fault table
        assert again.repaired == node.blockmap.stats().chunks and again.failed == 0
        assert all(not node.verify(block_id).faults for block_id in stored)
