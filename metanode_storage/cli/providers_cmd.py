"""`metanode storage providers ...`: configure, list and test storage providers."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated

import typer

from metanode_storage.cli import console, formatting
from metanode_storage.cli.options import (
    HomeOption,
    JsonOption,
    local_home,
    open_node,
    read_passphrase,
)
from metanode_storage.config.paths import NodeLayout
from metanode_storage.config.settings import ProviderSettings, load_settings
from metanode_storage.errors import ExitCode, InvalidSetting

app = typer.Typer(
    rich_markup_mode=None, help="Configure, list and test storage providers.", no_args_is_help=True
)

Text = Annotated[str | None, typer.Option()]


@app.command()
def configure(
    home: HomeOption = None,
    name: Annotated[str | None, typer.Option(help="Provider to add or change.")] = None,
    vendor: Annotated[str | None, typer.Option(help="aws, gcp, azure, digitalocean, ...")] = None,
    region: Text = None,
    bucket: Annotated[str | None, typer.Option(help="Bucket (container on Azure).")] = None,
    path: Annotated[
        Path | None, typer.Option(help="Directory of a local provider (--vendor local).")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Key prefix inside the bucket.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Override the vendor's endpoint.")] = None,
    account: Annotated[
        str | None, typer.Option(help="R2 account id, Azure storage account, GCP project.")
    ] = None,
    credentials: Annotated[
        str | None, typer.Option(help="sdk (default), keystore or anonymous.")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="AWS-style named profile.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds for one operation.")] = None,
    store_credentials: Annotated[
        bool,
        typer.Option(
            "--store-credentials",
            help="Seal the vendor's credential variables from the environment in the keystore.",
        ),
    ] = False,
    create_bucket: Annotated[
        bool, typer.Option("--create-bucket", help="Create the bucket if it is missing.")
    ] = False,
    aws_region: Text = None,
    gcp_region: Text = None,
    azure_region: Text = None,
    digitalocean_region: Text = None,
    linode_region: Text = None,
    vultr_region: Text = None,
    hetzner_region: Text = None,
    ovh_region: Text = None,
    cloudflare_account: Annotated[
        str | None, typer.Option(help="Cloudflare account id (R2's region is 'auto').")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Add a provider or change one. The seed's --aws-region style flags add or update
    the provider named after each vendor."""
    from metanode_storage.engine.provider_admin import configure_providers, provider_for_region

    layout = NodeLayout(local_home(home))
    settings = load_settings(layout.config)
    changes: list[ProviderSettings] = []
    seed_style = {
        "aws": aws_region,
        "gcp": gcp_region,
        "azure": azure_region,
        "digitalocean": digitalocean_region,
        "linode": linode_region,
        "vultr": vultr_region,
        "hetzner": hetzner_region,
        "ovh": ovh_region,
    }
    for vendor_name, vendor_region in seed_style.items():
        if vendor_region:
            changes.append(provider_for_region(settings, vendor_name, vendor_region))
    if cloudflare_account:
        changes.append(
            replace(provider_for_region(settings, "cloudflare", "auto"), account=cloudflare_account)
        )
    explicit = {
        "vendor": vendor,
        "region": region,
        "bucket": bucket,
        "path": str(path.expanduser().resolve()) if path is not None else None,
        "prefix": prefix,
        "endpoint": endpoint,
        "account": account,
        "credentials": credentials,
        "profile": profile,
        "timeout": timeout,
    }
    given = {k: v for k, v in explicit.items() if v is not None}
    if name:
        current = next((p for p in settings.providers if p.name == name), None)
        if current is None and "vendor" not in given:
            raise InvalidSetting(f"no provider named {name!r}", "pass --vendor to add it")
        base = current or ProviderSettings(name, str(given["vendor"]))
        changes.append(replace(base, **given))  # type: ignore[arg-type]
    elif given:
        raise InvalidSetting("--vendor, --bucket and the like need --name")
    if not changes:
        raise InvalidSetting(
            "nothing to configure", "see `metanode storage providers configure --help`"
        )
    settings = configure_providers(
        layout.home,
        changes,
        passphrase=read_passphrase,
        store_credentials=store_credentials,
        create_bucket=create_bucket,
    )
    names = [p.name for p in changes]
    if json_output:
        console.emit_json([asdict(p) for p in settings.providers if p.name in names])
    else:
        for provider in settings.providers:
            if provider.name in names:
                console.line(f"configured {provider.name}: {_describe(provider)}")


def _describe(provider: ProviderSettings) -> str:
    from metanode_storage.providers.catalogue import endpoint_of

    if provider.is_local:
        return f"local directory {provider.path}"
    try:
        where = endpoint_of(provider) or "the SDK's default endpoint"
    except InvalidSetting as exc:
        where = f"(no endpoint: {exc.message})"
    return (
        f"{provider.vendor} bucket {provider.bucket!r} in {provider.region or '-'} at {where}, "
        f"credentials from {provider.credentials}"
    )


@app.command("list")
def list_providers(home: HomeOption = None, json_output: JsonOption = False) -> None:
    """Each provider with its last measured health (run `providers test` to probe now)."""
    from metanode_storage.providers.health import HealthBoard

    layout = NodeLayout(local_home(home))
    settings = load_settings(layout.config)
    board = HealthBoard(layout.health)
    rows = []
    for provider in settings.providers:
        health = board.get(provider.name)
        rows.append(
            {
                **asdict(provider),
                "state": health.state,
                "latency_ms": health.latency_ms,
                "last_error": health.last_error,
                "where": _describe(provider),
            }
        )
    if json_output:
        console.emit_json(rows)
        return
    console.table(
        f"{len(rows)} provider(s)",
        ["name", "vendor", "where", "state", "latency", "last error"],
        [
            [
                r["name"],
                r["vendor"],
                r["where"],
                r["state"],
                formatting.millis(r["latency_ms"]),
                r["last_error"],
            ]
            for r in rows
        ],
    )


@app.command()
def test(
    name: Annotated[str, typer.Argument(help="Provider to probe.")],
    home: HomeOption = None,
    json_output: JsonOption = False,
) -> None:
    """Write, read back and delete a probe object; report each step's latency.

    Exit 0 when the provider works, 6 when it does not.
    """
    from metanode_storage.engine.provider_admin import probe_provider

    with open_node(home, read_only=True) as node:
        store = node.providers.get(name)
        if store is None:
            raise InvalidSetting(f"no provider named {name!r}", "see `providers list`")
        result = probe_provider(store)
    if json_output:
        console.emit_json(asdict(result))
    elif result.ok:
        console.line(
            f"{name}: ok (write {formatting.millis(result.write_ms)}, "
            f"read {formatting.millis(result.read_ms)}, "
            f"delete {formatting.millis(result.delete_ms)})"
        )
    else:
        console.line(f"{name}: FAILED: {result.error}")
    if not result.ok:
        raise typer.Exit(int(ExitCode.PROVIDER))
