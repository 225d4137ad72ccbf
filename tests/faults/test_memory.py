"""Memory stays bounded whatever the size: a 1 GiB store and retrieve stay under 300 MiB RSS."""

from __future__ import annotations

import os
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

import pytest

from tests.conftest import PASSPHRASE

GIB = 1024 * 1024 * 1024
LIMIT_KIB = 300 * 1024

# Streams 1 GiB of pseudo-random bytes (seeded, so the test can hash it too) to stdout.
_GENERATOR = """
import random, sys
rng = random.Random(7)
for _ in range(1024):
    sys.stdout.buffer.write(rng.randbytes(1 << 20))
"""


def _expected_hash() -> str:
    import random

    rng, digest = random.Random(7), sha256()
    for _ in range(1024):
        digest.update(rng.randbytes(1 << 20))
    return digest.hexdigest()


def _peak_rss_of(command: list[str], env: dict[str, str], **kwargs: object) -> tuple[int, bytes]:
    """Run ``command`` in a fresh child (via a wrapper) and return its own peak RSS in KiB."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "code = subprocess.call(sys.argv[1:])\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *command],
        env=env,
        capture_output=True,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.decode().strip().splitlines()[-1]), done.stdout


@pytest.mark.slow
def test_one_gibibyte_round_trip_in_bounded_memory(home: Path, tmp_path: Path) -> None:
    env = dict(os.environ, METANODE_HOME=str(home), METANODE_PASSPHRASE=PASSPHRASE)
    cli = [sys.executable, "-m", "metanode_storage", "storage"]
    with subprocess.Popen([sys.executable, "-c", _GENERATOR], stdout=subprocess.PIPE) as generator:
        store_rss, out = _peak_rss_of([*cli, "put", "-", "--json"], env, stdin=generator.stdout)
    block_id = out.decode().split('"block_id": "')[1].split('"')[0]
    target = tmp_path / "back.bin"
    retrieve_rss, _ = _peak_rss_of([*cli, "get", block_id, "-o", str(target)], env)
    assert target.stat().st_size == GIB
    digest = sha256()
    with open(target, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    assert digest.hexdigest() == _expected_hash()
    assert store_rss < LIMIT_KIB, f"store peaked at {store_rss // 1024} MiB"
    assert retrieve_rss < LIMIT_KIB, f"retrieve peaked at {retrieve_rss // 1024} MiB"
