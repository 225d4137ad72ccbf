"""A tree's small files laid into bundles (engine/tree_input.py): where each file lies, how
big bundles get, that the same files make the same bundles, and the manifest's fields."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage.engine import tree, tree_input
from metanode_storage.engine.bundles import Bundler
from metanode_storage.engine.chunker import MAX_CHUNK, MIN_CHUNK
from metanode_storage.errors import InputError, IntegrityError

_KEY = bytes(range(32))


def _bundle_all(files: list[bytes], key: bytes = _KEY) -> tuple[list[tree.Entry], list[bytes]]:
    """Every file through a Bundler; the entries (placed: first_chunk is the bundle's
    index) and the bundles' bytes."""
    bundler: Bundler[tree.Entry] = Bundler(key, tree_input.TREE_BUNDLES)
    entries, done = [], []
    for i, data in enumerate(files):
        entry = tree.Entry(f"f{i}", tree.FILE)
        entries.append(entry)
        if (bundle := bundler.add(entry, data)) is not None:
            done.append(bundle)
    if (last := bundler.close()) is not None:
        done.append(last)
    for index, bundle in enumerate(done):
        bundle.place(index)
    return entries, [b.data for b in done]


@settings(max_examples=40, deadline=None)
@given(
    files=st.lists(
        st.one_of(st.binary(max_size=64), st.integers(0, 300_000).map(lambda n: b"x" * n)),
        max_size=40,
    )
)
def test_every_file_lies_whole_at_its_offset(files: list[bytes]) -> None:
    entries, bundles = _bundle_all(files)
    for entry, data in zip(entries, files, strict=True):
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
        if not data:
            assert entry.chunks == 0  # an empty file needs no chunk
            continue
        assert entry.chunks == 1
        held = bundles[entry.first_chunk]
        assert held[entry.offset : entry.offset + entry.size] == data
    assert all(len(b) <= MAX_CHUNK for b in bundles)
    assert all(len(b) >= MIN_CHUNK for b in bundles[:-1])


def test_equal_files_are_stored_once() -> None:
    same = os.urandom(5000)
    entries, bundles = _bundle_all([same, os.urandom(100), same, same])
    assert sum(len(b) for b in bundles) == 5100
    assert {(e.first_chunk, e.offset) for e in (entries[0], entries[2], entries[3])} == {(0, 0)}


def test_bundles_are_about_a_chunk_and_resynchronise_after_an_insert() -> None:
    """Cut points depend on the files' content only: a file added in the middle of
    1,500 changes the bundle it lands in, not the ones after it."""
    rng = random.Random(7)
    files = [rng.randbytes(rng.randrange(1, 16_000)) for _ in range(1_500)]
    _, before = _bundle_all(files)
    _, after = _bundle_all([*files[:700], rng.randbytes(9_000), *files[700:]])
    assert 6 <= len(before) <= 20  # about 12 MB in bundles of about 1 MiB
    changed = set(after) - set(before)
    assert 1 <= len(changed) <= 2
    # the cut points are secret: another node's key cuts elsewhere
    _, elsewhere = _bundle_all(files, key=bytes(32))
    assert set(elsewhere[:-1]) != set(before[:-1])


def test_a_small_file_is_read_whole_and_one_that_grew_is_not(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"a" * tree_input.BUNDLED_UP_TO)
    read = tree_input.read_small(str(small))
    assert read.data == b"a" * tree_input.BUNDLED_UP_TO
    assert read.status.st_size == tree_input.BUNDLED_UP_TO
    grown = tmp_path / "grown"
    grown.write_bytes(b"b" * (tree_input.BUNDLED_UP_TO + 1))
    assert tree_input.read_small(str(grown)).data is None
    (tmp_path / "empty").write_bytes(b"")
    assert tree_input.read_small(str(tmp_path / "empty")).data == b""
    (tmp_path / "link").symlink_to(small)
    with pytest.raises(OSError):  # listed as a file, now a symlink: never followed
        tree_input.read_small(str(tmp_path / "link"))


def _manifest(version: int, **fields: object) -> bytes:
    entry = {"path": "a", "type": "file", "size": 3, "first_chunk": 0, "chunks": 1, **fields}
    return json.dumps({"v": version, "entries": [entry]}).encode()


def test_manifests_of_both_versions_are_read_and_bad_places_refused() -> None:
    (old,) = tree.parse_manifest(_manifest(1))
    assert old.offset == 0
    (new,) = tree.parse_manifest(_manifest(2, offset=4096))
    assert new.offset == 4096
    for bad in ({"offset": -1}, {"offset": "12"}, {"chunks": 1.5}, {"size": True}):
        with pytest.raises(IntegrityError, match="bad size or place"):
            tree.parse_manifest(_manifest(2, **bad))
    with pytest.raises(IntegrityError, match="version 3"):
        tree.parse_manifest(_manifest(3))


def test_small_files_are_read_ahead_in_order_with_their_failures(tmp_path: Path) -> None:
    entries = []
    for i in range(300):
        path = tmp_path / f"f{i}"
        path.write_bytes(i.to_bytes(2, "big") * (1 + i % 7))
        entries.append(tree.Entry(f"f{i}", tree.FILE, size=2 * (1 + i % 7), source=str(path)))
    (tmp_path / "f13").unlink()  # gone since it was listed
    (tmp_path / "f200").write_bytes(b"x" * (tree_input.BUNDLED_UP_TO + 1))  # grew
    with ThreadPoolExecutor(4) as pool:
        found = list(tree_input.read_small_files(entries, pool))
    assert len(found) == 300
    assert isinstance(found[13], FileNotFoundError)
    assert isinstance(found[200], tree_input.SmallFile) and found[200].data is None
    for i, read in enumerate(found):
        if i not in (13, 200):
            assert isinstance(read, tree_input.SmallFile)
            assert read.data == i.to_bytes(2, "big") * (1 + i % 7)
    sizes = [tree.Entry("big", tree.FILE, size=MAX_CHUNK // 2) for _ in range(7)]
    assert [len(b) for b in tree_input._batches(sizes)] == [2, 2, 2, 1]  # a few MiB read ahead


def test_a_file_replaced_by_a_symlink_after_the_walk_is_reported_not_followed(
    tmp_path: Path,
) -> None:
    """Listed as a regular file, then swapped for a link to something else: small or
    large, it is reported unreadable and nothing behind the link is read."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"not part of the tree" * 20_000)
    report = tree.WalkReport()
    entries = []
    for name, size in (("small", 10), ("large", tree_input.BUNDLED_UP_TO + 1)):
        (tmp_path / name).symlink_to(secret)
        entries.append(tree.Entry(name, tree.FILE, size=size, source=str(tmp_path / name)))
    with ThreadPoolExecutor(2) as pool:
        reading = tree_input.TreeInput(entries, report, strict=False, cut_key=_KEY, pool=pool)
        streams = list(reading.streams())
    assert len(streams) == 1  # the manifest alone
    assert [line.split(":")[0] for line in report.unreadable] == ["small", "large"]
    assert reading.stored == []


def _listed(path: Path) -> tree.Entry:
    info = path.stat()
    return tree.Entry(path.name, tree.FILE, 0o644, info.st_mtime_ns, info.st_size, source=str(path))


@pytest.mark.parametrize("strict", [False, True])
def test_a_file_written_to_while_it_is_read_is_reported(tmp_path: Path, strict: bool) -> None:
    """Stored as read, half old and half new perhaps: tar and borg warn of it, and so do
    we; --strict stores nothing. A small file is caught by the status of the descriptor
    it was read through, a large one once the store has read it to its end."""
    small, large, calm = tmp_path / "small", tmp_path / "large", tmp_path / "calm"
    small.write_bytes(b"s" * 100)
    large.write_bytes(b"L" * (tree_input.BUNDLED_UP_TO + 1))
    calm.write_bytes(b"c" * 10)
    entries = [_listed(small), _listed(large), _listed(calm)]
    os.utime(small, ns=(0, entries[0].mtime_ns + 1))  # written after it was listed
    report = tree.WalkReport()
    with ThreadPoolExecutor(2) as pool:
        reading = tree_input.TreeInput(entries, report, strict=strict, cut_key=_KEY, pool=pool)
        streams = reading.streams()
        if strict:
            with pytest.raises(InputError, match="small changed while it was read"):
                next(streams)
            return
        stream = next(streams)
        assert not isinstance(stream, bytes)
        assert stream.read() == b"L" * (tree_input.BUNDLED_UP_TO + 1)
        with large.open("ab") as more:  # while the store still has it open
            more.write(b"+")
        reading.heard(0, 1, "00" * 32, tree_input.BUNDLED_UP_TO + 1)  # as the store would
        bundle = next(streams)
        assert bundle == b"s" * 100 + b"c" * 10
        reading.heard(1, 1, "", len(bundle))
        assert isinstance(next(streams), io.BytesIO)  # the manifest
    assert report.changed == ["small", "large"]
    assert [e.path for e in reading.stored] == ["small", "large", "calm"]  # stored as read
