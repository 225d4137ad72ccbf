"""`metanode storage proof export | verify`: receipts a third party can check offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.cli.public_keys import PublicKeyOption, parse_public_keys
from metanode_storage.engine.proof import CryptographicProof, check_proof_document, proof_document
from metanode_storage.errors import ExitCode, InputError
from metanode_storage.fileio import output_file

app = typer.Typer(
    rich_markup_mode=None, help="Export and verify block proofs.", no_args_is_help=True
)


@app.command()
def export(
    block_id: Annotated[str, typer.Argument(help="Block whose proof to export.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write.")] = None,
    home: HomeOption = None,
) -> None:
    """Write the block's signed proof as a JSON file (stdout by default)."""
    with open_node(home) as node:
        block = node.blockmap.get_block(block_id)
        document = proof_document(
            CryptographicProof.from_dict(block.proof), f"metanode/{node.settings.node_id}"
        )
        node.audit.record("proof_export", block.block_id)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output is None:
        console.line(text.rstrip("\n"))
        return
    with output_file(output) as fh:
        fh.write(text.encode())


@app.command()
def verify(
    proof: Annotated[Path, typer.Argument(help="Proof file from `proof export`.")],
    data: Annotated[
        Path | None, typer.Option(help="Also check that this file is the one proved.")
    ] = None,
    public_key: PublicKeyOption = None,
    json_output: JsonOption = False,
) -> None:
    """Check a proof with nothing but the public key: no keystore, no providers, no network.

    Exit 0 when it holds against the --public-key given, 10 when it does not, 11 when
    it holds only against the key the proof itself carries (no --public-key: anyone
    could have made it with a key of their own).
    """
    try:
        document = json.loads(proof.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the proof {proof}: {exc}") from None
    keys = parse_public_keys(public_key)
    if len(keys) > 1:
        raise InputError("give one --public-key for a proof")
    expected = next(iter(keys.values()), None)
    try:
        data_file = open(data, "rb") if data is not None else None  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot read {data}: {exc.strerror}") from None
    try:
        problems = (
            check_proof_document(document, expected, data_file)
            if isinstance(document, dict)
            else ["not a metanode proof file"]
        )
    finally:
        if data_file is not None:
            data_file.close()
    if json_output:
        console.emit_json(
            {"ok": not problems, "problems": problems, "key_checked": expected is not None}
        )
    elif problems:
        for problem in problems:
            console.line(f"INVALID: {problem}")
    elif expected is None:
        console.line(
            "UNTRUSTED: consistent, but checked only against the key inside the proof; "
            "pass --public-key (from `metanode storage keys show`) to check who signed it"
        )
    else:
        console.line("proof valid" + ("" if data is None else "; the data matches"))
    if problems:
        raise typer.Exit(int(ExitCode.INTEGRITY))
    if expected is None:
        raise typer.Exit(int(ExitCode.UNTRUSTED))
