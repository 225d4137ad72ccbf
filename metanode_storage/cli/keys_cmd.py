"""`metanode storage keys show | rotate | escrow | recipient new`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console, formatting
from metanode_storage.cli.options import HomeOption, JsonOption, open_node
from metanode_storage.errors import InputError

app = typer.Typer(
    rich_markup_mode=None, help="Show and rotate the node's keys.", no_args_is_help=True
)
recipient_app = typer.Typer(
    rich_markup_mode=None,
    help="Recovery key pairs (X-Wing: ML-KEM-768 + X25519) to keep offline.",
    no_args_is_help=True,
)
app.add_typer(recipient_app, name="recipient")


@app.command()
def show(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Public signing keys (give these to auditors) and data key ids. No secret is shown."""
    with open_node(home, read_only=True) as node:
        keys = node.keys
    signers = [(k.signer, k) for k in keys.signing_keys]
    if json_output:
        console.emit_json(
            {
                "signing_keys": [
                    {
                        "key_id": s.key_id,
                        "public_key": s.public.text(),  # what --public-key takes
                        "ed25519": s.public_key.hex(),
                        "ml_dsa_65": s.public.ml_dsa.hex() if s.public.ml_dsa else None,
                        "hybrid": s.hybrid,
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
                "recovery_recipients": [
                    {"fingerprint": r.fingerprint, "recipient": r.text()} for r in keys.recipients
                ],
            }
        )
        return
    for signer, record in signers:
        state = "current"
        if record.retired_at:
            state = f"retired {formatting.timestamp(record.retired_at)}"
        kind = "Ed25519 + ML-DSA-65" if signer.hybrid else "Ed25519"
        console.line(f"signing {signer.key_id} {kind} ({state})")
        console.line(f"  ed25519   {signer.public_key.hex()}")
        if signer.public.ml_dsa:
            console.line(f"  ml-dsa-65 {signer.public.ml_dsa.hex()}")
    for key in keys.data_keys:
        current = "current" if key.key_id == keys.current_data_key else "old"
        console.line(f"data    {key.key_id} ({current})")
    for recipient in keys.recipients:
        console.line(f"recovery recipient {recipient.fingerprint} (X-Wing)")


@app.command()
def rotate(
    data: Annotated[
        bool, typer.Option("--data", help="Rotate the data key instead of the signing key.")
    ] = False,
    post_quantum: Annotated[
        bool,
        typer.Option(
            "--pq",
            help="Make the new signing key a TLSLS hybrid (Ed25519 + ML-DSA-65); a hybrid "
            "node's keys stay hybrid anyway.",
        ),
    ] = False,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make a new signing key (the old one signs the hand-over), or with --data a new data
    key that re-wraps every chunk key in the map (no data is re-uploaded)."""
    from metanode_storage.engine.keys import rotate_data_key, rotate_signing_key

    if data and post_quantum:
        raise InputError("--pq is for the signing key; data keys are AES-256 already")
    with open_node(home) as node:
        if data:
            with console.count_progress("re-wrapping chunk keys", node.map_stats().chunks) as bar:
                result: object = rotate_data_key(node, bar.advance)
        else:
            result = rotate_signing_key(node, post_quantum)
    document = asdict(result)  # type: ignore[call-overload]
    if json_output:
        console.emit_json(document)
    else:
        console.key_values([(k.replace("_", " "), str(v)) for k, v in document.items()])


@recipient_app.command("new")
def recipient_new(
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="The new identity file (owner-only; never replaces a file)."
        ),
    ],
    json_output: JsonOption = False,
) -> None:
    """Make a recovery key pair: the identity goes to a new file (keep it offline), the
    recipient is printed (give it to `keys escrow --to`). Needs no node."""
    from metanode_storage.crypto.xwing import XWingIdentity

    identity = XWingIdentity.generate()
    identity.write_new(output)
    recipient = identity.recipient
    if json_output:
        console.emit_json(
            {
                "identity_file": str(output),
                "fingerprint": recipient.fingerprint,
                "recipient": recipient.text(),
            }
        )
        return
    console.line(f"identity written to {output}: keep it offline, away from the node")
    console.line(f"fingerprint {recipient.fingerprint}")
    console.line(recipient.text())


def _recipient_text(value: str) -> str:
    """The recipient itself, or read from a file holding it (as `recipient new` prints)."""
    from metanode_storage.crypto.xwing import RECIPIENT_PREFIX, XWingRecipient

    if value.strip().startswith(RECIPIENT_PREFIX):
        return value
    try:
        lines = Path(value).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    found = [line.strip() for line in lines if line.strip().startswith(RECIPIENT_PREFIX)]
    if len(found) != 1:
        raise InputError(
            f"{value[:40]!r} is neither a recovery recipient nor a file holding one",
            f"give the {RECIPIENT_PREFIX}... line `keys recipient new` printed",
        )
    XWingRecipient.parse(found[0])
    return found[0]


@app.command()
def escrow(
    to: Annotated[
        str | None,
        typer.Option("--to", help="The recovery recipient (mnr1:...), or a file holding it."),
    ] = None,
    remove: Annotated[
        str | None,
        typer.Option(
            "--remove",
            metavar="FINGERPRINT",
            help="Stop escrowing to this recipient (`keys show` lists them).",
        ),
    ] = None,
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Seal the node's key material to a recovery recipient (X-Wing), in the keystore and
    in every map backup, so its identity file recovers the node without the passphrase
    (`recover --identity`). --remove takes that away: the keystore drops the copy, the
    pointers are deleted and every map backup is replaced by a fresh one."""
    from metanode_storage.engine.escrow import escrow_to, revoke

    if (to is None) == (remove is None):
        raise InputError("give --to RECIPIENT or --remove FINGERPRINT")
    with open_node(home) as node:
        if remove is not None:
            revoked = revoke(node, remove)
        else:
            assert to is not None
            result = escrow_to(node, _recipient_text(to))
    if remove is not None:
        if json_output:
            console.emit_json(asdict(revoked))
            return
        console.line(f"recovery recipient {revoked.recipient}: removed")
        for provider, outcome in revoked.pointers.items():
            backup = revoked.backups.get(provider, "not written")
            console.line(f"  {provider}: pointer {outcome}; map backup {backup}")
        return
    if json_output:
        console.emit_json(asdict(result))
        return
    state = "added" if result.added else "already a recipient"
    console.line(f"recovery recipient {result.recipient}: {state}")
    for provider, outcome in result.backups.items():
        console.line(f"  {provider}: {outcome}")
