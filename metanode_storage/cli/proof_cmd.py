"""`metanode storage proof export | verify`: receipts a third party can check offline."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.cli.public_keys import PublicKeyOption, parse_public_keys
from metanode_storage.errors import ExitCode, InputError
from metanode_storage.fileio import output_file

app = typer.Typer(
    rich_markup_mode=None, help="Export and verify block proofs.", no_args_is_help=True
)


@dataclass(frozen=True)
class _Checked:
    file: str
    block_id: str
    problems: list[str]


@app.command()
def export(
    block_ids: Annotated[
        list[str], typer.Argument(help="Blocks whose proofs to export.", show_default=False)
    ],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    home: HomeOption = None,
) -> None:
    """Write the blocks' signed proofs as JSON (stdout by default): one proof file for one
    block, a bundle of them for several."""
    from metanode_storage.engine.proof import bundle_document

    with open_node(home) as node:
        if output is not None:
            node.refuse_own_state(output)
        documents = node.export_proofs(block_ids)
    document = documents[0] if len(documents) == 1 else bundle_document(documents)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output is None:
        console.line(text.rstrip("\n"))
        return
    with output_file(output) as fh:
        fh.write(text.encode())


@app.command()
def verify(
    proofs: Annotated[
        list[Path],
        typer.Argument(help="Proof files or bundles from `proof export`.", show_default=False),
    ],
    data: Annotated[
        Path | None, typer.Option(help="Also check that this file is the one proved.")
    ] = None,
    public_key: PublicKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check proofs with nothing but the public key: no keystore, no providers, no network.

    Exit 0 when every proof holds against the --public-key given, 10 when one does not,
    11 when they hold only against the key each proof itself carries (no --public-key:
    anyone could have made them with a key of their own). Proofs signed together as a
    batch cost one signature check between them.
    """
    from metanode_storage.engine.proof import ProofChecker, proof_documents

    keys = parse_public_keys(public_key)
    if len(keys) > 1:
        raise InputError("give one --public-key")
    expected = next(iter(keys.values()), None)
    documents: list[tuple[str, object]] = []
    for path in proofs:
        try:
            parsed = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise InputError(f"cannot read the proof {path}: {exc}") from None
        members = proof_documents(parsed)
        documents += [
            (str(path) if len(members) == 1 else f"{path}[{i}]", m) for i, m in enumerate(members)
        ]
    if data is not None and len(documents) != 1:
        raise InputError("--data goes with exactly one proof")
    checker = ProofChecker(expected)
    results: list[_Checked] = []
    for label, document in documents:
        if data is None:
            problems = checker.check(document)
        else:
            try:
                with open(data, "rb") as data_file:
                    problems = checker.check(document, data_file)
            except OSError as exc:
                raise InputError(f"cannot read {data}: {exc.strerror}") from None
        block_id = (
            document.get("proof", {}).get("block_id", "") if isinstance(document, dict) else ""
        )
        results.append(_Checked(label, block_id, problems))
    failed = [r for r in results if r.problems]
    if json_output:
        console.emit_json(
            {
                "ok": not failed,
                "key_checked": expected is not None,
                "proofs": len(results),
                "problems": [p for r in failed for p in r.problems],
                "results": [asdict(r) | {"ok": not r.problems} for r in results],
            }
        )
    else:
        several = len(results) > 1
        for result in failed:
            for problem in result.problems:
                console.line(f"INVALID: {result.file + ': ' if several else ''}{problem}")
        if not failed and expected is None:
            console.line(
                "UNTRUSTED: consistent, but checked only against the key inside the proof; "
                "pass --public-key (from `metanode storage keys show`) to check who signed it"
            )
        elif not failed:
            what = f"{len(results)} proofs valid" if several else "proof valid"
            console.line(what + ("" if data is None else "; the data matches"))
    if failed:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if expected is None:
        raise typer.Exit(int(ExitCode.UNTRUSTED))
