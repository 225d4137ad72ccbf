"""install_files: a recovery's staged files reach their places whole and in order."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from metanode_storage.fileio import install_files


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
