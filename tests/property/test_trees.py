"""Directory trees as one block: `put DIR`, `get ID -o DIR`, `get ID --path`, `ls ID`.
A hypothesis property restores random trees (unicode names, empty files and directories,
deep paths, symlinks) exactly; special files are skipped, unreadable ones reported."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metanode_storage import Node
from metanode_storage.engine.chunker import MIN_CHUNK
from tests.conftest import PASSPHRASE, CliRunnerFn

_NAME = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\\0", max_codepoint=0x2FFF
    ),
    min_size=1,
    max_size=12,
).filter(lambda n: n not in (".", ".."))

# A tree: {name: bytes (a file) | dict (a directory) | ("link", target)}
_TREE = st.recursive(
    st.dictionaries(_NAME, st.binary(max_size=3000), max_size=3),
    lambda children: st.dictionaries(
        _NAME, st.one_of(children, st.binary(max_size=70_000)), max_size=4
    ),
    max_leaves=12,
)


def _build(root: Path, spec: dict[str, object]) -> None:
    root.mkdir()
    for name, value in spec.items():
        if isinstance(value, dict):
            _build(root / name, value)
        else:
            assert isinstance(value, bytes)
            (root / name).write_bytes(value)
            os.chmod(root / name, 0o640 if len(value) % 2 else 0o600)


def _snapshot(root: Path) -> dict[str, tuple[str, bytes | str, int, int]]:
    """Every entry below root: kind, content or link target, mode, mtime (directories too)."""
    seen: dict[str, tuple[str, bytes | str, int, int]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            seen[rel] = ("link", os.readlink(path), 0, 0)
        elif path.is_dir():
            seen[rel] = ("dir", b"", stat.S_IMODE(info.st_mode), info.st_mtime_ns)
        else:
            seen[rel] = ("file", path.read_bytes(), stat.S_IMODE(info.st_mode), info.st_mtime_ns)
    return seen


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=_TREE)
def test_random_trees_round_trip_exactly(
    cli: CliRunnerFn, tmp_path_factory: pytest.TempPathFactory, spec: dict[str, object]
) -> None:
    work = tmp_path_factory.mktemp("tree")
    source = work / "project"
    _build(source, spec)
    (source / "empty-dir" / "deeper" / "still").mkdir(parents=True)
    (source / "link").symlink_to("empty-dir/deeper")
    stored = cli("storage", "put", str(source))
    assert stored.exit_code == 0, stored.stderr
    block_id = stored.stdout.strip()
    restored = work / "restored"
    got = cli("storage", "get", block_id, "-o", str(restored))
    assert got.exit_code == 0, got.stderr
    assert _snapshot(restored / "project") == _snapshot(source)


def test_one_file_a_listing_and_the_proof(cli: CliRunnerFn, tmp_path: Path) -> None:
    source = tmp_path / "artifacts"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "tool").write_bytes(os.urandom(200_000))
    (source / "notes.txt").write_text("hello")
    block_id = cli("storage", "put", str(source), "--json").stdout
    block_id = json.loads(block_id)["block_id"]
    one = cli("storage", "get", block_id, "--path", "artifacts/bin/tool")
    assert one.exit_code == 0 and one.stdout_bytes == (source / "bin" / "tool").read_bytes()
    sub = tmp_path / "only-bin"
    assert cli("storage", "get", block_id, "-o", str(sub), "--path", "artifacts/bin").exit_code == 0
    assert sorted(p.name for p in sub.rglob("*")) == ["artifacts", "bin", "tool"]
    listing = json.loads(cli("storage", "ls", block_id, "--json").stdout)
    assert [e["path"] for e in listing] == [
        "artifacts",
        "artifacts/bin",
        "artifacts/bin/tool",
        "artifacts/notes.txt",
    ]
    whole = cli("storage", "get", block_id)  # a tree does not go to stdout whole
    assert whole.exit_code == 2 and "-o DIR" in whole.stderr
    assert cli("storage", "verify", block_id).exit_code == 0
    again = tmp_path / "again"
    assert cli("storage", "get", block_id, "-o", str(again)).exit_code == 0
    clash = cli("storage", "get", block_id, "-o", str(again))  # never overwrites
    assert clash.exit_code == 7 and "exists already" in clash.stderr


def test_one_entry_restores_the_directories_above_it_as_stored(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    """`get --path a/b/f -o DIR` left DIR/a and DIR/a/b private (0700, the mode a restore
    makes them with until the end), since only the chosen entry's own modes were set.
    A symlink or a directory asked for on stdout was called 'no file' in the tree."""
    source = tmp_path / "a"
    (source / "b").mkdir(parents=True)
    (source / "b" / "f").write_bytes(b"deep")
    (source / "b" / "link").symlink_to("f")
    os.chmod(source / "b", 0o751)
    os.chmod(source, 0o755)
    block_id = cli("storage", "put", str(source)).stdout.strip()
    out = tmp_path / "out"
    assert cli("storage", "get", block_id, "--path", "a/b/f", "-o", str(out)).exit_code == 0
    assert (out / "a" / "b" / "f").read_bytes() == b"deep"
    for restored, stored in ((out / "a", source), (out / "a" / "b", source / "b")):
        assert stat.S_IMODE(restored.stat().st_mode) == stat.S_IMODE(stored.stat().st_mode)
    assert sorted(p.name for p in (out / "a" / "b").iterdir()) == ["f"]  # nothing else
    link = cli("storage", "get", block_id, "--path", "a/b/link")
    assert link.exit_code == 7 and "'a/b/link' is a symlink to 'f' in the tree" in link.stderr
    directory = cli("storage", "get", block_id, "--path", "a/b")
    assert directory.exit_code == 7 and "'a/b' is a directory in the tree" in directory.stderr


_RESTORE_UNDER_A_FILE_SIZE_LIMIT = """
import resource, sys
from pathlib import Path
from metanode_storage import Node, Secret
from metanode_storage.errors import InputError
with Node.open(sys.argv[1], Secret(sys.argv[2].encode())) as node:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[5]), hard))  # writes past it fail
    try:
        node.retrieve_tree(sys.argv[3], Path(sys.argv[4]))
    except InputError as exc:
        print(exc.message)
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # the node's own writes at close
"""


@pytest.mark.parametrize("size", [300_000, 5_000_000], ids=["one chunk", "several chunks"])
def test_a_restore_cut_short_by_the_disk_leaves_no_part_of_a_file(
    node: Node, home: Path, tmp_path: Path, size: int
) -> None:
    """A file restored into a full disk stayed, cut short and exit 7, among the files
    that were whole: a truncated copy that looked restored. (RLIMIT_FSIZE stands in for
    the full disk: a write past it fails with EFBIG, as one on a full disk with ENOSPC.)"""
    source = tmp_path / "src"
    source.mkdir()
    (source / "big").write_bytes(os.urandom(size))
    (source / "small").write_bytes(b"whole")
    block, _ = node.store_tree([source])
    out = tmp_path / "out"
    script = _RESTORE_UNDER_A_FILE_SIZE_LIMIT
    args = [str(home), PASSPHRASE, block.block_id, str(out), str(size // 2)]
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "File too large" in done.stdout, done.stdout + done.stderr
    assert not (out / "src" / "big").exists()  # no part of it
    small = out / "src" / "small"  # whole, or not there if the failure stopped it first
    assert not small.exists() or small.read_bytes() == b"whole"


def test_a_restore_never_replaces_what_is_in_its_way(cli: CliRunnerFn, tmp_path: Path) -> None:
    """A symlink, a file or a device named by -o, or a link already where the tree puts
    one, is refused with a clear error (exit 7), not an internal error, and left as it was."""
    source = tmp_path / "src"
    source.mkdir()
    (source / "data").write_bytes(b"stored")
    (source / "link").symlink_to("data")
    block_id = cli("storage", "put", str(source)).stdout.strip()
    victim = tmp_path / "victim"
    victim.write_bytes(b"mine")
    pointer = tmp_path / "pointer"
    pointer.symlink_to(victim)
    for target in (pointer, victim, Path(os.devnull)):
        refused = cli("storage", "get", block_id, "--path", "src/data", "-o", str(target))
        assert refused.exit_code == 7, refused.stderr
        assert f"{target} exists already" in refused.stderr
    assert victim.read_bytes() == b"mine" and os.readlink(pointer) == str(victim)
    assert Path(os.devnull).is_char_device()
    into = tmp_path / "into"
    (into / "src").mkdir(parents=True)
    (into / "src" / "link").symlink_to("elsewhere")  # where the tree's own link goes
    clash = cli("storage", "get", block_id, "-o", str(into))
    assert clash.exit_code == 7 and f"{into / 'src' / 'link'} exists already" in clash.stderr
    assert os.readlink(into / "src" / "link") == "elsewhere"


def test_a_restore_refused_for_a_path_in_its_way_writes_nothing(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    """A file where the tree puts one, found partway, left the files restored before it
    behind: a half-restored tree to clean up by hand. The clash is now found first."""
    source = tmp_path / "tt"
    (source / "a" / "b").mkdir(parents=True)
    (source / "a" / "b" / "f").write_bytes(b"1")
    (source / "g").write_bytes(b"2")
    block_id = cli("storage", "put", str(source)).stdout.strip()
    into = tmp_path / "into"
    (into / "tt").mkdir(parents=True)
    (into / "tt" / "g").write_bytes(b"mine")
    clash = cli("storage", "get", block_id, "-o", str(into))
    assert clash.exit_code == 7 and f"{into / 'tt' / 'g'} exists already" in clash.stderr
    assert sorted(p.name for p in into.rglob("*")) == ["g", "tt"]
    assert (into / "tt" / "g").read_bytes() == b"mine"
    (into / "tt" / "g").unlink()  # the directories already there are restored into
    os.chmod(into / "tt", 0o700)
    assert cli("storage", "get", block_id, "-o", str(into)).exit_code == 0
    # and keep their own mode: they are the user's (their mtime moves, as any
    # directory's does when entries are added)
    assert stat.S_IMODE((into / "tt").stat().st_mode) == 0o700
    os.chmod(into / "tt", stat.S_IMODE(source.stat().st_mode))
    os.utime(into / "tt", ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns))
    assert _snapshot(into / "tt") == _snapshot(source)


def test_a_tree_deeper_than_the_recursion_limit(node: Node, tmp_path: Path) -> None:
    """The walk recursed once per directory level: a tree 1,200 levels deep (a path of
    2,400 characters, well within PATH_MAX) ended in an internal RecursionError."""
    source = tmp_path / "deep"
    chain = [str(source)]
    for _ in range(1200):
        chain.append(os.path.join(chain[-1], "d"))
    for directory in chain:
        os.mkdir(directory)
    Path(chain[-1], "f").write_bytes(b"at the bottom")
    block, report = node.store_tree([source])
    assert report == type(report)()  # nothing skipped, unreadable or changed
    entries = node.tree_entries(block.block_id)
    assert len(entries) == 1 + 1200 + 1 and entries[-1].path.endswith("/d/f")
    out = tmp_path / "out"
    node.retrieve_tree(block.block_id, out)
    restored = [os.path.join(out, os.path.relpath(d, tmp_path)) for d in chain]
    assert Path(restored[-1], "f").read_bytes() == b"at the bottom"
    for copy in (chain, restored):  # pytest's clean-up recurses too
        os.unlink(os.path.join(copy[-1], "f"))
        for directory in reversed(copy):
            os.rmdir(directory)


def test_a_tree_store_tells_its_progress_bar_the_total(node: Node, tmp_path: Path) -> None:
    """`put DIR` drew a bar with no total, so no share done and no time left."""
    source = tmp_path / "src"
    _build(source, {"a": os.urandom(MIN_CHUNK + 10), "d": {"b": b"small", "c": b""}})
    totals: list[int] = []
    done: list[int] = []
    node.store_tree([source], done.append, listed=totals.append)
    assert totals == [MIN_CHUNK + 10 + 5]
    assert sum(done) >= totals[0]  # the files, then the manifest


def test_a_tree_given_as_dot_dot_is_stored_under_its_real_name(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`put ..` stored a tree whose root was named "..": the manifest then named an
    unsafe path, and the block could be neither listed nor restored (exit 10)."""
    (tmp_path / "project" / "inner").mkdir(parents=True)
    (tmp_path / "project" / "notes").write_text("kept")
    monkeypatch.chdir(tmp_path / "project" / "inner")
    for written in ("..", "../", ".", "../inner/.."):
        block, _ = node.store_tree([Path(written)])
        root = node.tree_entries(block.block_id)[0].path
        assert root == ("inner" if written == "." else "project"), written
    out = tmp_path / "out"
    node.retrieve_tree(block.block_id, out)
    assert (out / "project" / "notes").read_text() == "kept"


def test_paths_that_hold_nothing_to_store_are_refused(cli: CliRunnerFn, tmp_path: Path) -> None:
    """Two paths that do not exist were stored as an empty tree block (exit 7 for the
    unreadable paths, yet a block listed as if it were their backup)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused = cli("storage", "put", str(tmp_path / "gone"), str(fifo))
    assert refused.exit_code == 7 and "nothing to store: gone:" in refused.stderr
    assert "fifo (not a file, directory or symlink)" in refused.stderr
    assert json.loads(cli("storage", "ls", "--json").stdout) == []


def test_special_files_are_skipped_and_unreadable_ones_reported(
    cli: CliRunnerFn, tmp_path: Path
) -> None:
    source = tmp_path / "mixed"
    source.mkdir()
    (source / "fine.txt").write_text("kept")
    os.mkfifo(source / "pipe")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(source / "sock"))
    blocked = source / "blocked"
    blocked.mkdir()
    (blocked / "secret").write_text("x")
    os.chmod(blocked, 0)
    try:
        readable = os.access(blocked, os.R_OK)  # root reads anything: then only skips show
        result = cli("storage", "put", str(source))
        assert "skipped mixed/pipe" in result.stderr and "skipped mixed/sock" in result.stderr
        assert result.exit_code == (0 if readable else 7), result.stderr
        strict = cli("storage", "put", str(source), "--strict")
        assert strict.exit_code == 7 and strict.stdout == ""
    finally:
        os.chmod(blocked, 0o700)
        server.close()
    out = tmp_path / "out"
    assert cli("storage", "get", result.stdout.strip(), "-o", str(out)).exit_code == 0
    assert (out / "mixed" / "fine.txt").read_text() == "kept"
    assert not (out / "mixed" / "pipe").exists()


def test_names_never_reach_a_provider(cli: CliRunnerFn, home: Path, tmp_path: Path) -> None:
    source = tmp_path / "Quarterly-Board-Minutes"
    source.mkdir()
    (source / "acquisition-plan-draft.txt").write_text("confidential " * 100)
    assert cli("storage", "put", str(source)).exit_code == 0
    for blob in (home / "providers").rglob("*"):
        if blob.is_file():
            body = blob.read_bytes()
            assert b"acquisition" not in body and b"Quarterly" not in body
            assert "acquisition" not in blob.name


def test_small_files_share_bundles_and_a_tree_stored_again_dedups(
    node: Node, tmp_path: Path
) -> None:
    """2,000 small files become a few bundle chunks, not 2,000; a large file is chunked on
    its own. Stored again, nothing is new; one file changed, its bundle and the manifest are."""
    source = tmp_path / "build"
    for i in range(2_000):
        (source / f"d{i % 20}").mkdir(parents=True, exist_ok=True)
        (source / f"d{i % 20}" / f"f{i}.o").write_bytes(os.urandom(1 + i % 5_000))
    (source / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    first, _ = node.store_tree([source])
    chunks_after_first = node.blockmap.stats().chunks
    small_bytes = sum(1 + i % 5_000 for i in range(2_000))
    # bundles, the big file's chunks (at least 256 KiB each), the manifest
    assert chunks_after_first <= small_bytes // MIN_CHUNK + 1 + 12 + 1

    again, _ = node.store_tree([source])
    assert node.blockmap.stats().chunks == chunks_after_first  # the manifest too is the same
    (source / "d7" / "f7.o").write_bytes(b"changed")
    changed, _ = node.store_tree([source])
    assert 2 <= node.blockmap.stats().chunks - chunks_after_first <= 3

    out = tmp_path / "out"
    node.retrieve_tree(changed.block_id, out)
    assert _snapshot(out / "build") == _snapshot(source)
    entries = {e.path: e for e in node.tree_entries(changed.block_id)}
    assert entries["build/d7/f7.o"].size == 7
    offsets = [e for e in entries.values() if e.type == "file" and e.offset > 0]
    assert offsets, "no file lies inside a bundle"
    inside = offsets[len(offsets) // 2]
    one = io.BytesIO()
    node.retrieve_tree_file(changed.block_id, inside.path, one)
    assert one.getvalue() == (tmp_path / inside.path).read_bytes()
    big = io.BytesIO()
    node.retrieve_tree_file(first.block_id, "build/big.bin", big)
    assert big.getvalue() == (source / "big.bin").read_bytes()
    assert again.block_id != first.block_id


def test_the_nodes_own_home_is_left_out_of_a_tree(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    """A backup of a directory that holds the node (its keystore, map and local
    providers' packs) stores the rest: otherwise each backup of it would store the
    packs of the one before."""
    assert home.parent == tmp_path
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("mine")
    stored = cli("storage", "put", str(tmp_path), "--strict", "--json")
    assert stored.exit_code == 0, stored.stderr  # left out on purpose: not a --strict failure
    document = json.loads(stored.stdout)
    assert document["left_out"] == [f"{tmp_path.name}/{home.name}/"]
    assert f"left out {tmp_path.name}/{home.name}/" in stored.stderr
    out = tmp_path / "restored"
    assert cli("storage", "get", document["block_id"], "-o", str(out)).exit_code == 0
    assert sorted(p.name for p in (out / tmp_path.name).iterdir()) == ["data"]
    assert (out / tmp_path.name / "data" / "notes.txt").read_text() == "mine"

    alone = cli("storage", "put", str(home), str(tmp_path / "data"))
    assert alone.exit_code == 0, alone.stderr
    only_home = cli("storage", "put", str(home), "--json")
    assert only_home.exit_code == 7 and "nothing to store" in only_home.stderr
