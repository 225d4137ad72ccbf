"""`metanode storage distributed start` (the HTTP service and its backup manager) and
`metanode storage token`: what a node serves, apart from setting it up and watching it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console
from metanode_storage.cli.options import HomeOption, open_node, parse_bool
from metanode_storage.engine.repair_defaults import DEFAULT_OFFLINE_GRACE
from metanode_storage.errors import InvalidSetting


def start(
    home: HomeOption = None,
    port: Annotated[int, typer.Option(min=1, max=65535)] = 9090,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = (
        "127.0.0.1"
    ),
    audit_enabled: Annotated[str | None, typer.Option(metavar="true|false")] = None,
    backup_enabled: Annotated[
        str | None, typer.Option(metavar="true|false", help="Run the repairing backup manager.")
    ] = None,
    max_body_mb: Annotated[
        int, typer.Option(min=1, help="Largest request body accepted, in MiB.")
    ] = 64 * 1024,
    max_uploads: Annotated[
        int, typer.Option(min=1, help="Uploads in flight at once; more get 503.")
    ] = 8,
    body_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds an upload may send nothing (then 408).")
    ] = 30.0,
    header_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds a new connection has to send its request.")
    ] = 10.0,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate (chain): serve TLS 1.3 only. Needs --tls-key."),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --tls-cert (keep it 0600).")
    ] = None,
    insecure_plain_http: Annotated[
        bool,
        typer.Option(
            "--insecure-plain-http",
            help="Allow a non-loopback --host without TLS: the token and data cross the "
            "network in clear.",
        ),
    ] = False,
    repair_interval: Annotated[float, typer.Option(min=1, help="Seconds between repairs.")] = 60.0,
    offline_grace: Annotated[
        float, typer.Option(min=0, help="Seconds Offline before a provider's replicas move.")
    ] = DEFAULT_OFFLINE_GRACE,
) -> None:
    """Run the storage service in the foreground (HTTP API, backup manager) until SIGTERM."""
    # aiohttp: loaded only for the service
    import asyncio

    from metanode_storage.service.api import Limits
    from metanode_storage.service.runner import is_loopback, serve
    from metanode_storage.service.tls import server_context

    if (tls_cert is None) != (tls_key is None):
        raise InvalidSetting("--tls-cert and --tls-key go together", "give both, or neither")
    tls = server_context(tls_cert, tls_key) if tls_cert and tls_key else None
    if not is_loopback(host) and tls is None and not insecure_plain_http:
        raise InvalidSetting(
            f"--host {host} is not a loopback address, and without TLS the token and data "
            "would cross the network in clear",
            "give --tls-cert and --tls-key, or bind to 127.0.0.1 behind a TLS proxy "
            "(--insecure-plain-http accepts the risk)",
        )

    console.configure_logging(service=True)
    with open_node(home) as node:
        if audit_enabled is not None:
            node.audit.enabled = parse_bool(audit_enabled)
        backups = (
            node.settings.backup_enabled if backup_enabled is None else parse_bool(backup_enabled)
        )
        asyncio.run(
            serve(
                node,
                host,
                port,
                backup_enabled=backups,
                limits=Limits(max_body_mb * 1024**2, body_timeout, max_uploads),
                header_timeout=header_timeout,
                repair_interval=repair_interval,
                offline_grace=offline_grace,
                tls=tls,
                ready=console.note,
            )
        )


token_app = typer.Typer(
    rich_markup_mode=None, help="The service's bearer token.", no_args_is_help=True
)


@token_app.command("show")
def token_show(home: HomeOption = None) -> None:
    """Print the bearer token that the service's API expects."""
    with open_node(home, read_only=True) as node:
        console.line(node.keys.api_token.reveal().decode())


@token_app.command("rotate")
def token_rotate(home: HomeOption = None) -> None:
    """Make a new token (a running service keeps the old one until restarted)."""
    from metanode_storage.engine.keys import rotate_api_token

    with open_node(home) as node:
        new = rotate_api_token(node)
    console.line(new)
