"""`providers configure | list | test`, and `init --providers`, through the real entry point.

Only loopback servers are ever contacted: the seed-style providers below point at the
real clouds' endpoints, so those tests only write and read configuration."""

from __future__ import annotations

import json
import shutil
import tomllib
import uuid
from pathlib import Path

import pytest

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.keystore import read_keystore
from tests.conftest import PASSPHRASE, CliRunnerFn
from tests.servers import S3_ACCESS_KEY, S3_SECRET_KEY, ServerProcess


def _config(home: Path) -> dict[str, dict[str, object]]:
    document = tomllib.loads((home / "config.toml").read_text())
    return {p["name"]: p for p in document["providers"]}


def test_seed_style_region_flags_add_providers(cli: CliRunnerFn, home: Path) -> None:
    result = cli(
        "storage",
        "providers",
        "configure",
        "--aws-region",
        "us-east-1",
        "--gcp-region",
        "us-central1",
        "--azure-region",
        "eastus",
        "--digitalocean-region",
        "fra1",
        "--cloudflare-account",
        "0123abcd",
    )
    assert result.exit_code == 0, result.stderr
    providers = _config(home)
    assert providers["aws"]["region"] == "us-east-1"
    assert providers["gcp"]["region"] == "us-central1"
    assert providers["azure"]["region"] == "eastus"
    assert str(providers["aws"]["bucket"]).startswith("metanode-")
    assert "fra1.digitaloceanspaces.com" in result.stdout
    assert "https://0123abcd.r2.cloudflarestorage.com" in result.stdout
    again = cli("storage", "providers", "configure", "--aws-region", "eu-west-1")
    assert again.exit_code == 0
    assert _config(home)["aws"]["region"] == "eu-west-1"
    listing = json.loads(cli("storage", "providers", "list", "--json").stdout)
    assert {p["name"] for p in listing} >= {"aws", "gcp", "azure", "digitalocean", "cloudflare"}


def test_configure_store_credentials_create_bucket_and_test(
    cli: CliRunnerFn, home: Path, s3_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    bucket = f"mn-{uuid.uuid4().hex[:12]}"
    result = cli(
        "storage",
        "providers",
        "configure",
        "--name",
        "minio-like",
        "--vendor",
        "aws",
        "--bucket",
        bucket,
        "--endpoint",
        s3_server.endpoint,
        "--store-credentials",
        "--create-bucket",
    )
    assert result.exit_code == 0, result.stderr
    config_text = (home / "config.toml").read_text()
    assert S3_SECRET_KEY not in config_text and S3_ACCESS_KEY not in config_text
    assert _config(home)["minio-like"]["credentials"] == "keystore"
    keys = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    assert keys.provider_credentials["minio-like"]["secret_access_key"].reveal() == (
        S3_SECRET_KEY.encode()
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")  # from now on only the keystore has them
    probe = cli("storage", "providers", "test", "minio-like", "--json")
    assert probe.exit_code == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert report["ok"] and report["write_ms"] > 0 and report["read_ms"] > 0
    listing = {
        p["name"]: p for p in json.loads(cli("storage", "providers", "list", "--json").stdout)
    }
    assert listing["minio-like"]["state"] == "Active"
    assert S3_SECRET_KEY not in probe.stdout + probe.stderr


def test_test_reports_a_dead_provider(cli: CliRunnerFn, home: Path) -> None:
    result = cli(
        "storage",
        "providers",
        "configure",
        "--name",
        "gone",
        "--vendor",
        "aws",
        "--bucket",
        "b",
        "--endpoint",
        "http://127.0.0.1:9",
        "--credentials",
        "anonymous",
        "--timeout",
        "1",
    )
    assert result.exit_code == 0, result.stderr
    probe = cli("storage", "providers", "test", "gone")
    assert probe.exit_code == 6
    assert "FAILED" in probe.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--name", "x"), "no provider named"),
        (("--name", "x", "--vendor", "nosuch", "--bucket", "b"), "unknown"),
        (("--name", "x", "--vendor", "aws"), "no bucket"),
        (("--bucket", "b"), "need --name"),
        (
            (
                "--name",
                "x",
                "--vendor",
                "aws",
                "--bucket",
                "b",
                "--endpoint",
                "https://key:secret@host",
            ),
            "credentials do not belong",
        ),
        ((), "nothing to configure"),
    ],
)
def test_bad_configuration_is_refused(
    cli: CliRunnerFn, home: Path, args: tuple[str, ...], message: str
) -> None:
    before = (home / "config.toml").read_text()
    result = cli("storage", "providers", "configure", *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert (home / "config.toml").read_text() == before


def test_store_credentials_needs_them_in_the_environment(
    cli: CliRunnerFn, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    result = cli(
        "storage",
        "providers",
        "configure",
        "--name",
        "x",
        "--vendor",
        "aws",
        "--bucket",
        "b",
        "--store-credentials",
    )
    assert result.exit_code == 2
    assert "AWS_ACCESS_KEY_ID" in result.stderr


def test_init_with_cloud_vendors_writes_their_providers(
    cli: CliRunnerFn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "cloud-node"))
    result = cli(
        "storage",
        "distributed",
        "init",
        "--providers",
        "aws,gcp,azure,digitalocean",
        "--replication-factor",
        "3",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    providers = _config(tmp_path / "cloud-node")
    assert set(providers) == {"aws", "gcp", "azure", "digitalocean"}
    assert providers["digitalocean"]["region"] == "nyc3"
    buckets = {p["bucket"] for p in providers.values()}
    assert len(buckets) == 1 and str(next(iter(buckets))).startswith("metanode-")


def test_configure_adds_a_local_directory_provider(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    target = tmp_path / "disk-4"
    missing = cli(
        "storage", "providers", "configure", "--name", "disk-4", "--vendor", "local",
        "--path", str(target),
    )  # fmt: skip
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    no_path = cli("storage", "providers", "configure", "--name", "disk-4", "--vendor", "local")
    assert no_path.exit_code == 2 and "--path" in no_path.stderr
    added = cli(
        "storage", "providers", "configure", "--name", "disk-4", "--vendor", "local",
        "--path", str(target), "--create-bucket",
    )  # fmt: skip
    assert added.exit_code == 0, added.stderr
    assert _config(home)["disk-4"]["path"] == str(target.resolve())
    assert cli("storage", "providers", "test", "disk-4").exit_code == 0


def test_pointing_a_provider_at_an_empty_location_warns(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    """A provider moved to a mistyped or empty directory took its replicas out of reach
    without a word: status went on counting them healthy. A copy of its blobs, or a
    change that does not move it, is not warned of."""
    block_id = cli("storage", "put", "-", stdin=b"kept on three providers").stdout.strip()
    empty = tmp_path / "empty"
    empty.mkdir()
    moved = cli("storage", "providers", "configure", "--name", "local-3", "--path", str(empty))
    assert moved.exit_code == 0, moved.stderr
    assert "local-3 now points at a location that holds no blobs" in moved.stderr
    assert "`metanode storage repair`" in moved.stderr
    copied = tmp_path / "copied"
    shutil.copytree(home / "providers" / "local-2", copied)
    for change in (
        ("--name", "local-2", "--path", str(copied)),
        ("--name", "local-1", "--timeout", "7"),
    ):
        quiet = cli("storage", "providers", "configure", *change)
        assert quiet.exit_code == 0 and "warning" not in quiet.stderr, quiet.stderr
    assert cli("storage", "repair").exit_code == 0  # as the warning says
    assert cli("storage", "verify", block_id).exit_code == 0


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_create_bucket_in_any_region_including_us_east_1(
    cli: CliRunnerFn,
    home: Path,
    s3_server: ServerProcess,
    monkeypatch: pytest.MonkeyPatch,
    region: str,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    bucket = f"mn-{uuid.uuid4().hex[:12]}"
    result = cli(
        "storage", "providers", "configure", "--name", "aws-east", "--vendor", "aws",
        "--region", region, "--bucket", bucket, "--endpoint", s3_server.endpoint,
        "--store-credentials", "--create-bucket",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert cli("storage", "providers", "test", "aws-east").exit_code == 0


def test_configure_is_all_or_nothing(
    cli: CliRunnerFn, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-that-must-not-be-kept")
    keystore, config = (home / "keystore.mnk").read_bytes(), (home / "config.toml").read_bytes()
    result = cli(
        "storage", "providers", "configure", "--name", "dead", "--vendor", "aws",
        "--region", "us-east-1", "--bucket", "mn-dead", "--endpoint", "http://127.0.0.1:9",
        "--timeout", "1", "--store-credentials", "--create-bucket",
    )  # fmt: skip
    assert result.exit_code == 6, result.stderr
    assert (home / "keystore.mnk").read_bytes() == keystore
    assert (home / "config.toml").read_bytes() == config
    material = read_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()))
    assert "dead" not in material.provider_credentials
