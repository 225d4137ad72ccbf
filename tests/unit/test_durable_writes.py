"""Durable writes: a recovery's staged files reach their places whole and in order, and a
restored tree is flushed to disk before the restore returns."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from metanode_storage import Node
from metanode_storage.engine import tree_blocks
from metanode_storage.fileio import install_files, sync_filesystem


def _staged(tmp_path: Path, names: list[str]) -> list[tuple[Path, Path]]:
    moves = []
    for name in names:
        staged = tmp_path / f".{name}.recovering"
        staged.write_bytes(name.encode() * 3)
        moves.append((staged, tmp_path / name))
    return moves


def test_every_file_is_in_place_and_no_staged_file_is_left(tmp_path: Path) -> None:
    (tmp_path / "keystore.mnk").write_bytes(b"old")
    install_files(_staged(tmp_path, ["blockmap.sqlite", "keystore.mnk", "config.toml"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "blockmap.sqlite",
        "config.toml",
        "keystore.mnk",
    ]
    assert (tmp_path / "keystore.mnk").read_bytes() == b"keystore.mnk" * 3


def test_files_are_synced_before_any_rename_and_the_last_rename_waits_for_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order a power cut could expose: data first, then every rename but the last
    on disk, then the last one (a recovered home counts once its config is there)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        calls.append(("fsync", kind))
        real_fsync(fd)

    def replace(src: str | Path, dst: str | Path) -> None:
        calls.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    install_files(_staged(tmp_path, ["keystore.mnk", "config.toml"]))
    assert calls == [
        ("fsync", "file"),
        ("fsync", "file"),
        ("replace", "keystore.mnk"),
        ("fsync", "dir"),
        ("replace", "config.toml"),
        ("fsync", "dir"),
    ]


def test_nothing_to_install_is_no_work(tmp_path: Path) -> None:
    install_files([])
    assert list(tmp_path.iterdir()) == []


def test_sync_filesystem_flushes_a_directory_and_refuses_what_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    sync_filesystem(tmp_path)
    with pytest.raises(NotADirectoryError):
        sync_filesystem(tmp_path / "file")
    with pytest.raises(FileNotFoundError):
        sync_filesystem(tmp_path / "missing")


def test_a_tree_restore_flushes_its_target_after_every_file_is_written(
    node: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"alpha")
    (source / "sub" / "b.bin").write_bytes(os.urandom(3000))
    block, _ = node.store_tree([source])
    flushed: list[tuple[Path, list[str]]] = []

    def recording(directory: Path) -> None:
        written = sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))
        flushed.append((directory, written))
        sync_filesystem(directory)

    monkeypatch.setattr(tree_blocks, "sync_filesystem", recording)
    target = tmp_path / "restored"
    node.retrieve_tree(block.block_id, target)
    assert flushed == [(target, ["src", "src/a.txt", "src/sub", "src/sub/b.bin"])]
    assert (target / "src" / "sub" / "b.bin").read_bytes() == (
        source / "sub" / "b.bin"
    ).read_bytes()
