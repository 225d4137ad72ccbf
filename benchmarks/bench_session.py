"""A CLI `get` of a 4 KiB block with and without a session (QLOCK sessions).

    python benchmarks/bench_session.py [--runs 10]

Each `get` is a fresh `metanode` process, as in a CI job; without a session it runs
Argon2id (the keystore's own parameters, 64 MiB, t=3, p=4 by default) to unlock.
Prints the median wall time and the peak RSS of each.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

PASSPHRASE = "benchmark passphrase"


def _run(env: dict[str, str], *args: str) -> tuple[float, int, str]:
    exe = str(Path(sys.executable).with_name("metanode"))
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [exe, "storage", *args], env=env, stdout=out, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"metanode storage {' '.join(args)} failed ({proc.returncode})")
        out.seek(0)
        return seconds, usage.ru_maxrss * 1024, out.read().decode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        base = {k: v for k, v in os.environ.items() if not k.startswith("METANODE_")}
        env = {**base, "METANODE_HOME": f"{tmp}/home", "XDG_RUNTIME_DIR": f"{tmp}/run"}
        os.mkdir(f"{tmp}/run", 0o700)
        with_pass = {**env, "METANODE_PASSPHRASE": PASSPHRASE}
        _run(with_pass, "distributed", "init")
        source = Path(tmp) / "small.bin"
        source.write_bytes(os.urandom(4096))
        block_id = _run(with_pass, "put", str(source))[2].strip()
        rows = []
        for label, run_env in (("passphrase (Argon2id)", with_pass), ("session", env)):
            if run_env is env:
                _run(with_pass, "session", "start", "--ttl", "10m")
            results = [_run(run_env, "get", block_id, "-o", "/dev/null") for _ in range(args.runs)]
            seconds = statistics.median(r[0] for r in results)
            peak = max(r[1] for r in results)
            rows.append((label, f"{seconds * 1000:.0f} ms", f"{peak / 2**20:.0f} MiB"))
        _run(env, "session", "end")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; `metanode storage get` of 4 KiB, median of {args.runs}"
    )
    print_table(("unlocked by", "wall time", "peak RSS"), rows)


if __name__ == "__main__":
    main()
