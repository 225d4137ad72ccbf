"""`metanode storage keys show | rotate`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from metanode_storage.cli import console, formatting
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.keys import rotate_data_key, rotate_signing_key

app = typer.Typer(
    rich_markup_mode=None, help="Show and rotate the node's keys.", no_args_is_help=True
)


@app.command()
def show(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Public signing keys (give these to auditors) and data key ids. No secret is shown."""
    with open_node(home, read_only=True) as node:
        keys = node.keys
    signers = [(NodeSigner(k.seed), k) for k in keys.signing_keys]
    if json_output:
        console.emit_json(
            {
                "signing_keys": [
                    {
                        "key_id": s.key_id,
                        "public_key": s.public_key.hex(),
                        "created_at": k.created_at,
                        "retired_at": k.retired_at,
                    }
                    for s, k in signers
                ],
                "data_keys": [
                    {
                        "key_id": k.key_id,
                        "created_at": k.created_at,
                        "current": k.key_id == keys.current_data_key,
                    }
                    for k in keys.data_keys
                ],
            }
        )
        return
    for signer, record in signers:
        state = "current"
        if record.retired_at:
            state = f"retired {formatting.timestamp(record.retired_at)}"
        console.line(f"signing {signer.key_id} {signer.public_key.hex()} ({state})")
    for key in keys.data_keys:
        current = "current" if key.key_id == keys.current_data_key else "old"
        console.line(f"data    {key.key_id} ({current})")


@app.command()
def rotate(
    data: Annotated[
        bool, typer.Option("--data", help="Rotate the data key instead of the signing key.")
    ] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make a new signing key (the old one signs the hand-over), or with --data a new data
    key that re-wraps every chunk key in the map (no data is re-uploaded)."""
    with open_node(home) as node:
        if data:
            with console.count_progress(
                "re-wrapping chunk keys", node.blockmap.stats().chunks
            ) as bar:
                result: object = rotate_data_key(node, bar.advance)
        else:
            result = rotate_signing_key(node)
    document = asdict(result)  # type: ignore[call-overload]
    if json_output:
        console.emit_json(document)
    else:
        console.key_values([(k.replace("_", " "), str(v)) for k, v in document.items()])
