"""`metanode storage put | get | verify | ls | rm`: the commands scripts and cron jobs use."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metanode_storage.cli import console, formatting, remote
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.errors import ExitCode, InputError, InvalidSetting

if TYPE_CHECKING:
    from metanode_storage.engine.verification import BlockVerification


def register(app: typer.Typer) -> None:
    for command in (put, get, verify, ls, rm, gc):
        app.command()(command)


def _input_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size if path != "-" else None
    except OSError:
        return None


def put(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="A file, - for standard input, or directories and several paths "
            "(stored together as one directory-tree block).",
            show_default=False,
        ),
    ],
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Trees: fail on an unreadable or special file, or one written to while "
            "it was read, instead of going on.",
        ),
    ] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Store a file or a tree; print its block id once every replica is durable.

    A tree keeps names, modes, modification times, symlinks and empty
    directories. Devices, sockets and FIFOs are skipped with a warning; an
    unreadable file is reported, the rest is stored, and the exit code is 7.
    A file written to while it was read is stored as read, with a warning.
    The node's own home and local provider directories are left out.
    """
    through = remote.service()
    if through is not None:
        remote.put(through, paths, json_output)
        return
    from metanode_storage.engine.tree import WalkReport

    single = len(paths) == 1 and (paths[0] == "-" or not Path(paths[0]).is_dir())
    report = WalkReport()  # a single file's stays empty
    with open_node(home) as node:
        if single and paths[0] == "-":
            with console.byte_progress("storing", None) as bar:
                block = node.store(console.binary_stdin(), "", bar.advance)
        elif single:
            with console.byte_progress("storing", _input_size(paths[0])) as bar:
                block = node.store_file(paths[0], bar.advance)
        else:
            if "-" in paths:
                raise InvalidSetting("- (standard input) cannot be part of a tree")
            with console.byte_progress("storing", None) as bar:
                roots = [Path(p) for p in paths]
                block, report = node.store_tree(roots, bar.advance, strict, bar.set_total)
            for entry in report.skipped:
                console.warn(f"skipped {entry}")
            for own in report.left_out:
                console.warn(f"left out {own}: this node's own home or provider directory")
            for changed in report.changed:
                console.warn(f"{changed} changed while it was read: stored as read")
            for problem in report.unreadable:
                console.warn(f"not stored: {problem}")
    try:
        if json_output:
            console.emit_json({**block.to_dict(), **report.to_dict()})
        else:
            console.line(block.block_id)
    except InputError as exc:  # stored, but stdout refused the id: say it where it can be read
        raise InputError(f"stored as {block.block_id}, but {exc.message}") from None
    if report.unreadable:
        raise typer.Exit(int(ExitCode.INPUT))


def get(
    block_id: Annotated[str, typer.Argument(help="The block id that put printed.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write here instead of stdout (a tree: the directory)."
        ),
    ] = None,
    path: Annotated[
        str | None, typer.Option("--path", help="Trees: only this file or directory.")
    ] = None,
    home: HomeOption = None,
) -> None:
    """Retrieve a block, verified, to stdout or a file; a tree into a directory."""
    through = remote.service()
    if through is not None:
        if path is not None:
            raise InvalidSetting("--path (trees) is not available through --remote")
        remote.get(through, block_id, output)
        return
    to_stdout = output is None or str(output) == "-"
    sink = console.binary_stdout() if to_stdout else None  # refuse a closed stdout up front
    with open_node(home) as node:
        total, is_tree = node.size_and_kind(block_id)
        with console.byte_progress("retrieving", total) as bar:
            if is_tree:
                if sink is not None:
                    if path is None:
                        raise InvalidSetting(
                            "a directory tree needs -o DIR (or --path FILE for one file)"
                        )
                    node.retrieve_tree_file(block_id, path, sink, bar.advance)
                    sink.flush()
                else:
                    assert output is not None
                    node.retrieve_tree(block_id, output, path, bar.advance)
            elif path is not None:
                raise InvalidSetting("--path is for directory-tree blocks")
            elif sink is not None:
                node.retrieve(block_id, sink, bar.advance)
                sink.flush()
            else:
                assert output is not None
                node.retrieve_to_path(block_id, output, bar.advance)


def _verification_dict(result: BlockVerification) -> dict[str, Any]:
    return {
        "block_id": result.block_id,
        "ok": result.ok,
        "replicas_checked": result.replicas_checked,
        "faults": [
            {"provider": f.provider, "state": f.state, "detail": f.detail} for f in result.faults
        ],
        "unreachable_providers": result.unreachable,
        "error": result.error,
    }


def verify(
    block_id: Annotated[str | None, typer.Argument(help="Block to check.")] = None,
    all_blocks: Annotated[bool, typer.Option("--all", help="Check every block.")] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check every replica: present, authentic, right content.

    Exit 0 when all is well, 10 when a replica is missing or corrupt or a
    block cannot be read, 6 when a provider could not be reached.
    """
    from metanode_storage.engine.verification import BlockVerification

    if (block_id is None) == (not all_blocks):
        raise InvalidSetting("give a block id or --all, not both or neither")
    through = remote.service()
    if through is not None:
        if block_id is None:
            raise InvalidSetting("--all is not available through --remote: verify one block")
        _report_verification([BlockVerification.from_dict(through.verify(block_id))], json_output)
        return
    with open_node(home) as node:
        if all_blocks:
            total = node.map_stats().logical_bytes
            with console.byte_progress("verifying", total) as bar:
                results = list(node.verify_all(bar.advance))
        else:
            assert block_id is not None
            results = [node.verify(block_id)]
    _report_verification(results, json_output)


def _report_verification(results: list[BlockVerification], json_output: bool) -> None:
    bad = [r for r in results if not r.ok or r.faults]
    unreachable = sorted({p for r in results for p in r.unreachable})
    if json_output:
        console.emit_json(
            {
                "blocks": [_verification_dict(r) for r in results],
                "blocks_checked": len(results),
                "blocks_with_problems": len(bad),
                "unreachable_providers": unreachable,
            }
        )
    else:
        for result in bad:
            for fault in result.faults:
                console.line(
                    f"{result.block_id}: replica on {fault.provider} is {fault.state} "
                    f"({fault.detail})"
                )
            if result.error:
                console.line(f"{result.block_id}: {result.error}")
        for provider in unreachable:
            console.line(f"provider {provider} could not be reached")
        console.line(
            f"{len(results)} block(s) checked, {len(bad)} with problems, "
            f"{sum(r.replicas_checked for r in results)} replica(s) read"
        )
    if bad:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if unreachable:
        raise typer.Exit(int(ExitCode.PROVIDER))


def ls(
    block_id: Annotated[
        str | None, typer.Argument(help="A directory-tree block: list its files.")
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """List stored blocks, or the files of one tree block."""
    through = remote.service()
    if through is not None and block_id is not None:
        raise InvalidSetting("listing a tree is not available through --remote")
    if block_id is not None:
        with open_node(home, read_only=True) as node:
            entries = node.tree_entries(block_id)
        if json_output:
            console.emit_json([e.to_dict() for e in entries])
            return
        for entry in entries:
            suffix = "/" if entry.type == "dir" else (f" -> {entry.target}" if entry.target else "")
            size = formatting.size(entry.size) if entry.type == "file" else ""
            console.line(f"{size:>10}  {entry.path}{suffix}")
        return
    if through is not None:
        blocks = through.ls()
    else:
        with open_node(home, read_only=True) as node:
            blocks = [b.summary() for b in node.blocks()]
    if json_output:
        console.emit_json(blocks)
        return
    console.table(
        f"{len(blocks)} block(s)",
        ["block id", "name", "size", "created", "providers"],
        [
            [
                b["block_id"],
                b["name"],
                formatting.size(b["size_bytes"]),
                formatting.timestamp(b["created_at"]),
                ",".join(b["providers"]),
            ]
            for b in blocks
        ],
        whole=("block id",),
    )


def rm(
    block_ids: Annotated[
        list[str],
        typer.Argument(help="Blocks to delete (ids or unique prefixes).", show_default=False),
    ],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete blocks and every replica that no other block needs.

    Every id is checked first: if one names no block, nothing is deleted.
    """
    with open_node(home) as node, console.count_progress("removing", len(block_ids)) as bar:
        removed = node.remove_many(block_ids, bar.advance)
    if json_output:
        document: dict[str, Any] = {
            "blocks": [{"block_id": b, "blobs_deleted": n} for b, n in removed],
            "blobs_deleted": sum(n for _, n in removed),
        }
        if len(removed) == 1:  # the shape `rm` printed when it took one id
            document.update(document["blocks"][0])
        console.emit_json(document)
    else:
        for block_id, deleted in removed:
            console.note(f"removed {block_id} ({deleted} blob(s) deleted from providers)")


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete blobs that no block needs (left behind by interrupted stores), and rewrite
    packs mostly made of removed chunks (below repack_below in config.toml)."""
    with open_node(home) as node:
        removed = node.collect_garbage(dry_run)
        packs = node.repack(dry_run)
    if json_output:
        console.emit_json(
            {
                "dry_run": dry_run,
                "orphans": removed,
                "packs_rewritten": packs.packs_rewritten,
                "bytes_reclaimed": packs.bytes_reclaimed,
            }
        )
        return
    verb = "would delete" if dry_run else "deleted"
    for provider, count in removed.items():
        console.line(f"{provider}: {verb} {count} orphan blob(s)")
    verb = "would rewrite" if dry_run else "rewrote"
    for provider, count in packs.packs_rewritten.items():
        reclaimed = packs.bytes_reclaimed.get(provider, 0)
        console.line(f"{provider}: {verb} {count} pack(s), reclaiming {reclaimed} bytes")
