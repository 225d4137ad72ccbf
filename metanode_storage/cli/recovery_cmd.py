"""`metanode storage backup-map` and `metanode storage recover`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import (
    HomeOption,
    JsonOption,
    local_home,
    open_node,
    read_passphrase,
)
from metanode_storage.config.settings import ProviderSettings
from metanode_storage.errors import InvalidSetting, ProviderError


def backup_map(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Write the sealed map, keystore and trail backup to the providers (two at least)."""
    with open_node(home) as node:
        outcome = node.backup_map()
    if json_output:
        console.emit_json(outcome)
        return
    for provider, result in outcome.items():
        console.line(f"{provider}: {result}")


def recover(
    name: Annotated[str, typer.Option(help="The provider's name in the lost node's config.")],
    vendor: Annotated[str, typer.Option(help="aws, gcp, azure, ..., local")],
    path: Annotated[Path | None, typer.Option(help="Local provider directory.")] = None,
    bucket: Annotated[str, typer.Option(help="Bucket or container.")] = "",
    prefix: Annotated[str, typer.Option()] = "",
    region: Annotated[str, typer.Option()] = "",
    endpoint: Annotated[str, typer.Option()] = "",
    account: Annotated[str, typer.Option()] = "",
    credentials: Annotated[str, typer.Option(help="sdk (default) or anonymous.")] = "sdk",
    identity: Annotated[
        Path | None,
        typer.Option(
            help="A recovery identity file (`keys recipient new`): recover without the "
            "passphrase; the one given then becomes the node's new passphrase."
        ),
    ] = None,
    map_url: Annotated[
        str,
        typer.Option(
            "--map",
            metavar="postgresql://USER@HOST[:PORT]/DB",
            help="Put the recovered map, trail and locks into this new PostgreSQL database "
            "(a node that shared its map across hosts; others then `distributed join`). "
            "Default: SQLite in the home.",
        ),
    ] = "",
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rebuild a lost node's home from one reachable provider and the passphrase, or a
    recovery identity the node's keys were escrowed to.

    The provider's credentials come from the SDK's environment (the keystore is what is
    being recovered). The recovered node reaches that provider where this command did
    (--path, --bucket, --prefix, --endpoint, --account); correct the others' locations
    with `providers configure` if they moved. Afterwards every block retrieves as before.
    """
    from metanode_storage.crypto.xwing import XWingIdentity
    from metanode_storage.engine.backup import recover_home
    from metanode_storage.engine.node import Node
    from metanode_storage.providers.catalogue import open_provider

    if credentials == "keystore":
        raise InvalidSetting("the keystore is what is being recovered", "use sdk or anonymous")
    settings = ProviderSettings(
        name,
        vendor,
        path=str(path or ""),
        region=region,
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        account=account,
        credentials=credentials,
    )
    settings.validate()
    target = local_home(home)
    key = XWingIdentity.read(identity) if identity else None
    passphrase = read_passphrase(confirm=key is not None)  # with an identity: the new one
    recovered = recover_home(target, passphrase, open_provider(settings), key, map_url, settings)
    backups: dict[str, str] = {}
    with Node.open(target, passphrase) as node:  # proves the keystore and map open
        node.audit.adopt_tail(name)  # the events published with the newest checkpoint
        if key is not None:
            node.audit.record(
                "recover_with_identity",
                detail={"recipient": key.recipient.fingerprint, "provider": name},
            )
            try:  # the new passphrase's backups, which it finds; the identity finds the old
                backups = node.backup_map()
            except ProviderError as exc:
                console.warn(f"the node is recovered, but its map backup is not: {exc.message}")
                backups = {"error": exc.message}
        stats = node.map_stats()
        trail = node.audit.verify()
        signing_keys = list(node.keys.public_keys())
    document = {
        **asdict(recovered),
        "home": str(target),
        "blocks": stats.blocks,
        "signing_key_ids": signing_keys,
        "audit_trail_ok": trail.ok,
        "audit_problems": trail.problems,
        **({"map_backups": backups} if key is not None else {}),
    }
    if json_output:
        console.emit_json(document)
        return
    console.key_values(
        [
            ("Recovered Node", recovered.node_id),
            ("Home", str(target)),
            ("Blocks", f"{stats.blocks:,}"),
            ("Signing Keys", ", ".join(signing_keys)),
            ("Audit Trail", "intact" if trail.ok else f"PROBLEM: {trail.problems[0]}"),
            *[(f"Map Backup on {p}", outcome) for p, outcome in backups.items()],
        ]
    )
