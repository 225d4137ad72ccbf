"""Every example runs, against the installed CLI and a throwaway node."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import blob_files

ROOT = Path(__file__).resolve().parents[2]
METANODE = shutil.which("metanode") or str(Path(sys.executable).parent / "metanode")


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        METANODE=METANODE,
        METANODE_HOME=str(tmp_path / "node"),
        METANODE_PASSPHRASE="an example passphrase",
    )


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, check=False, cwd=ROOT)


def test_quickstart(tmp_path: Path) -> None:
    done = _run(["bash", "examples/quickstart.sh"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "retrieved bit-exact" in done.stdout
    assert "Distributed Storage Status: Active" in done.stdout


def test_ci_and_cron_examples(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run([METANODE, "storage", "distributed", "init"], env).returncode == 0
    artefact = tmp_path / "build.tar"
    artefact.write_bytes(os.urandom(10_000))
    stored = _run(["bash", "examples/ci-store-retrieve.sh", str(artefact)], env)
    assert stored.returncode == 0, stored.stderr
    assert (tmp_path / "build.tar.block-id").read_text().strip() in stored.stdout
    cron = _run(["bash", "examples/cron-verify.sh"], env)
    assert cron.returncode == 0, cron.stderr
    assert "1 blocks checked, 0 with problems" in cron.stdout
    blobs = blob_files(tmp_path / "node", "an example passphrase")
    blobs[0].write_bytes(b"\x00" * 10)
    assert _run(["bash", "examples/cron-verify.sh"], env).returncode == 10


def test_library_usage(tmp_path: Path) -> None:
    done = _run([sys.executable, "examples/library_usage.py"], _env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "local-1" in done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completions_are_current(shell: str) -> None:
    env = dict(os.environ, _METANODE_COMPLETE=f"source_{shell}")
    generated = subprocess.run([METANODE], env=env, capture_output=True, text=True, check=False)
    assert generated.stdout == (ROOT / "completions" / f"metanode.{shell}").read_text()


def test_rich_and_typer_stay_in_the_cli() -> None:
    package = ROOT / "metanode_storage"
    for path in package.rglob("*.py"):
        text = path.read_text()
        uses_rich = "import rich" in text or "from rich" in text
        uses_typer = "import typer" in text or "from typer" in text
        if uses_rich:
            assert path.name == "console.py", path
        if uses_typer:
            assert path.parent.name == "cli", path


@pytest.mark.parametrize("example", sorted((ROOT / "examples" / "providers").glob("*.toml")))
def test_provider_examples_are_valid_configuration(example: Path) -> None:
    import tomllib

    from metanode_storage.config.settings import ProviderSettings
    from metanode_storage.providers.catalogue import endpoint_of

    for table in tomllib.loads(example.read_text())["providers"]:
        settings = ProviderSettings(**table)
        settings.validate()
        endpoint = endpoint_of(settings)
        assert endpoint is None or endpoint.startswith("https://")


def test_cron_and_systemd_examples_name_real_commands() -> None:
    """The scheduled commands in the examples parse as real CLI invocations."""
    import shlex

    from metanode_storage.cli.app import main

    crontab = (ROOT / "examples" / "crontab").read_text()
    unit = (ROOT / "examples" / "systemd" / "metanode-integrity.service").read_text()
    commands = [
        line.split("metanode", 1)[1].split(">")[0].split("||")[0]
        for line in crontab.splitlines()
        if line[:1].isdigit()
    ]
    commands.append(
        next(line for line in unit.splitlines() if line.startswith("ExecStart=")).split(
            "metanode", 1
        )[1]
    )
    assert len(commands) == 3
    for command in commands:
        assert main([*shlex.split(command), "--help"]) == 0
    timer = (ROOT / "examples" / "systemd" / "metanode-integrity.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    assert "Type=oneshot" in unit and "PASSPHRASE=" not in unit  # only a passphrase file
