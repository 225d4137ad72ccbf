"""`--help` and shell completion load the CLI, not the engine.

Completion runs `metanode` on every TAB (fish twice), so what it imports is what the
operator waits for: the engine, fsspec and the cloud SDKs cost about 0.2 s before any
work starts. A command that works imports them when it opens the node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_HEAVY = (
    "metanode_storage.engine.node",
    "fsspec",
    "s3fs",
    "gcsfs",
    "adlfs",
    "zstandard",
    "pydantic",  # typer 0.29 converts every parsed parameter through it (pyproject.toml)
)
_PROBE = """
import contextlib, io, json, os, sys
from metanode_storage.cli.app import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(sys.argv[1:])
print(json.dumps({"code": code, "out": out.getvalue(),
                  "modules": sorted(m for m in sys.modules if m.startswith(%r))}))
"""


def _probe(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE % (_HEAVY,), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_help_of_every_group_loads_no_engine() -> None:
    for args in (["--help"], ["storage", "--help"], ["storage", "distributed", "--help"]):
        result = _probe(*args)
        assert result["code"] == 0
        assert "Usage: metanode" in str(result["out"])
        assert result["modules"] == [], args


def test_a_tab_completion_loads_no_engine() -> None:
    """What bash runs on TAB after `metanode storage di`."""
    result = _probe(
        env={
            "COMP_WORDS": "metanode storage di",
            "COMP_CWORD": "2",
            "_METANODE_COMPLETE": "complete_bash",
        }
    )
    assert "distributed" in str(result["out"]).split()
    assert result["modules"] == []


def test_a_command_that_parses_options_loads_neither_engine_nor_pydantic(tmp_path: Path) -> None:
    """`session status` reads no keystore: what it imports is the CLI's own start-up."""
    result = _probe("storage", "session", "status", "--home", str(tmp_path), "--json")
    assert result["code"] == 0
    assert json.loads(str(result["out"])) == {"active": False}
    assert result["modules"] == []


def test_the_package_still_offers_the_engine_by_name() -> None:
    """`from metanode_storage import Node` (the scripts' entry) loads it on first use."""
    import metanode_storage

    assert metanode_storage.Node.__name__ == "Node"
    assert "Node" in metanode_storage.__all__
