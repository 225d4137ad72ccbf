"""This tool against restic, borg and rclone crypt on the same data, in one run.

    python benchmarks/bench_peers.py [--size-mib 1024] [--files 20000] [--runs 3]
                                     [--workdir DIR] [--only store,tree,changed]

Peers come from Debian (`apt-get install restic borgbackup rclone`); a peer that is not
installed is left out of the table. Every tool writes to a local directory, each run to fresh
paths (on ext4 without a journal, creating files right after a mass delete is up to 10x
slower, so each run's directories are new and deleted only at the end of the workload).
metanode runs as its console script (`metanode storage put/get`), as a user or CI job does,
with replication factor 1 on one local provider unless a row says rf=3. Times are medians of
``--runs``; peak memory is the largest child RSS of any run (from wait4).

Workloads:
- a file of alternating 1 MiB blocks of random bytes and of text (``--size-mib``);
- a tree of ``--files`` 4 KiB random files in 20 directories, stored as a tree;
- the same file, then a copy with 1% of its bytes changed (64 KiB runs at random offsets):
  stored bytes after both, and the time to restore the changed copy.

Each restore is timed twice: until the tool returns, and until what it wrote is on disk
(the restore, then an fsync of every file and directory it wrote). `metanode storage get -o`
returns once its file is durable; rclone, restic and borg return with it in the page cache,
so only the second figure compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from report_table import print_table  # benchmarks/ is on sys.path when run as a script

MIB = 1024 * 1024
PASSWORD = "benchmark passphrase"
_WORDS = (  # noqa: SIM905 - a paragraph reads better than 100 quoted words
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has when who will "
    "more no if out so said what up its about into than them can only other new some could "
    "time these two may then do first any my now such like our over man me even most made "
    "after also did many before must through back years where much your way well down should "
    "block chunk provider replica storage metanode audit proof signature container"
).split()


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    peak_rss: int = 0  # bytes

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def run(cmd: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, str]:
    """Run a command; return (seconds, its peak RSS in bytes, its stdout)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), env=env, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, unlike wait()
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(
                f"{' '.join(cmd)} failed ({proc.returncode}): {err.read().decode()[-2000:]}"
            )
        return seconds, usage.ru_maxrss * 1024, out.read().decode()


def read_through(path: Path) -> None:
    """Read every file below ``path`` once, into the page cache."""
    for file in [path] if path.is_file() else sorted(path.rglob("*")):
        if file.is_file() and not file.is_symlink():
            with open(file, "rb") as fh:
                while fh.read(MIB):
                    pass


def flush_to_disk(path: Path) -> float:
    """Seconds to fsync every file and directory below ``path`` (``path`` included): what
    a restore that returned with its data still in the page cache owes before a crash
    can no longer lose it. A restore that is durable already pays almost nothing."""
    started = time.perf_counter()
    for entry in [path, *sorted(path.rglob("*"))]:
        if entry.is_symlink():
            continue
        fd = os.open(entry, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def file_count(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


# -- data ----------------------------------------------------------------------------------


def make_mixed_file(path: Path, size_mib: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        for i in range(size_mib):
            if i % 2 == 0:
                fh.write(rng.randbytes(MIB))
            else:
                text = " ".join(rng.choices(_WORDS, k=MIB // 4)).encode()
                fh.write(text[:MIB].ljust(MIB, b" "))


def make_changed_copy(source: Path, target: Path, seed: int) -> None:
    """``source`` with 1% of its bytes overwritten, in 64 KiB runs at random offsets."""
    shutil.copyfile(source, target)
    rng = random.Random(seed)
    size = source.stat().st_size
    run_len = 64 * 1024
    with open(target, "r+b") as fh:
        for _ in range(max(1, size // 100 // run_len)):
            fh.seek(rng.randrange(0, size - run_len))
            fh.write(rng.randbytes(run_len))


def make_tree(root: Path, files: int, seed: int) -> None:
    rng = random.Random(seed)
    for d in range(20):
        (root / f"dir{d:02d}").mkdir(parents=True)
    for i in range(files):
        (root / f"dir{i % 20:02d}" / f"file{i:05d}.bin").write_bytes(rng.randbytes(4096))


# -- tools ---------------------------------------------------------------------------------


class Tool:
    """One tool's repository at a fresh path: store a path, restore the last stored one."""

    name = ""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base = base
        self.env = env
        self.repo = base / "repo"

    def init(self) -> None:
        raise NotImplementedError

    def store(self, path: Path) -> tuple[float, int]:
        raise NotImplementedError

    def restore(self, target: Path) -> tuple[float, int]:
        """Restore what the last store() stored below ``target``."""
        raise NotImplementedError

    def stored_bytes(self) -> int:
        return dir_bytes(self.repo)

    def objects(self) -> int:
        """Files the repository holds: what an object store would be sent as PUTs."""
        return file_count(self.repo)


class Metanode(Tool):
    def __init__(self, base: Path, env: dict[str, str], rf: int = 1) -> None:
        super().__init__(base, env)
        self.rf = rf
        self.name = "metanode" if rf == 1 else f"metanode rf={rf}"
        self.env = {**env, "METANODE_HOME": str(base / "home"), "METANODE_PASSPHRASE": PASSWORD}
        self.exe = str(Path(sys.executable).with_name("metanode"))
        self.last = ""

    def init(self) -> None:
        run(
            [
                self.exe,
                "storage",
                "distributed",
                "init",
                "--replication-factor",
                str(self.rf),
                "--max-providers",
                str(max(self.rf, 1)),
            ],
            self.env,
        )
        self.repo = self.base / "home" / "providers"

    def store(self, path: Path) -> tuple[float, int]:
        seconds, peak, out = run([self.exe, "storage", "put", str(path), "--json"], self.env)
        self.last = json.loads(out)["block_id"]
        return seconds, peak

    def restore(self, target: Path) -> tuple[float, int]:
        seconds, peak, _ = run(
            [self.exe, "storage", "get", self.last, "-o", str(target / "out")], self.env
        )
        return seconds, peak


class Restic(Tool):
    name = "restic"

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        super().__init__(base, env)
        self.env = {**env, "RESTIC_PASSWORD": PASSWORD, "RESTIC_CACHE_DIR": str(base / "cache")}

    def init(self) -> None:
        run(["restic", "-r", str(self.repo), "init"], self.env)

    def store(self, path: Path) -> tuple[float, int]:
        seconds, peak, _ = run(["restic", "-r", str(self.repo), "backup", str(path)], self.env)
        return seconds, peak

    def restore(self, target: Path) -> tuple[float, int]:
        seconds, peak, _ = run(
            ["restic", "-r", str(self.repo), "restore", "latest", "--target", str(target)],
            self.env,
        )
        return seconds, peak

    def objects(self) -> int:
        return file_count(self.repo / "data")


class Borg(Tool):
    name = "borg lz4"

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        super().__init__(base, env)
        self.env = {
            **env,
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_CACHE_DIR": str(base / "cache"),
            "BORG_CONFIG_DIR": str(base / "config"),
            "BORG_SECURITY_DIR": str(base / "security"),
            "BORG_KEYS_DIR": str(base / "keys"),
        }
        self.archives = 0

    def init(self) -> None:
        run(["borg", "init", "--encryption", "repokey-blake2", str(self.repo)], self.env)

    def store(self, path: Path) -> tuple[float, int]:
        self.archives += 1
        seconds, peak, _ = run(
            [
                "borg",
                "create",
                "--compression",
                "lz4",
                f"{self.repo}::a{self.archives}",
                path.name,
            ],
            self.env,
            cwd=path.parent,
        )
        return seconds, peak

    def restore(self, target: Path) -> tuple[float, int]:
        target.mkdir(parents=True, exist_ok=True)
        seconds, peak, _ = run(
            ["borg", "extract", f"{self.repo}::a{self.archives}"], self.env, cwd=target
        )
        return seconds, peak

    def objects(self) -> int:
        return file_count(self.repo / "data")


class RcloneCrypt(Tool):
    name = "rclone crypt"

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        super().__init__(base, env)
        obscured = subprocess.run(
            ["rclone", "obscure", PASSWORD], capture_output=True, check=True, text=True
        ).stdout.strip()
        self.env = {
            **env,
            "RCLONE_CONFIG": str(base / "rclone.conf"),
            "RCLONE_CONFIG_SECRET_TYPE": "crypt",
            "RCLONE_CONFIG_SECRET_REMOTE": str(self.repo),
            "RCLONE_CONFIG_SECRET_PASSWORD": obscured,
        }
        self.stores = 0

    def init(self) -> None:
        self.repo.mkdir(parents=True)

    def store(self, path: Path) -> tuple[float, int]:
        self.stores += 1
        what = "copyto" if path.is_file() else "copy"
        seconds, peak, _ = run(["rclone", what, str(path), f"secret:s{self.stores}"], self.env)
        return seconds, peak

    def restore(self, target: Path) -> tuple[float, int]:
        seconds, peak, _ = run(
            ["rclone", "copyto", f"secret:s{self.stores}", str(target / "out")], self.env
        )
        return seconds, peak


PEERS: dict[str, tuple[str, Callable[[Path, dict[str, str]], Tool]]] = {
    "restic": ("restic", Restic),
    "borg": ("borg", Borg),
    "rclone": ("rclone", RcloneCrypt),
}


# -- workloads -----------------------------------------------------------------------------


@dataclass
class Result:
    store: Timing = field(default_factory=Timing)
    restore: Timing = field(default_factory=Timing)
    durable: Timing = field(default_factory=Timing)  # the restore, then fsync of what it wrote
    stored: list[int] = field(default_factory=list)
    objects: list[int] = field(default_factory=list)


def measure(
    makers: dict[str, Callable[[Path], Tool]],
    work: Path,
    runs: int,
    sources: Sequence[Path],
    restore_check: Callable[[Path], None],
) -> dict[str, Result]:
    """For each tool and run: store ``sources`` in turn into a fresh repository (the last
    store is timed), then restore the last one (timed). Every store starts with its
    source in the page cache: otherwise whichever tool comes first in a round pays for
    reading it from disk and the next one reads it from memory (these VMs page out idle
    page cache within seconds). Every restore starts with the tool's repository in the
    page cache too: metanode's store drops the packs it wrote from the cache
    (``fileio.drop_cached``) and the peers' stores leave theirs there, so restores would
    otherwise time reads from disk against reads from memory."""
    results: dict[str, Result] = {name: Result() for name in makers}
    for i in range(runs):
        for name, make in makers.items():  # interleaved, so drift hits every tool alike
            base = work / f"{name.replace(' ', '_')}-{i}"
            base.mkdir()
            tool = make(base)
            tool.init()
            for source in sources:
                read_through(source)
                seconds, peak = tool.store(source)
            result = results[name]
            result.store.seconds.append(seconds)
            result.store.peak_rss = max(result.store.peak_rss, peak)
            result.stored.append(tool.stored_bytes())
            result.objects.append(tool.objects())
            read_through(base)
            target = base / "restored"
            target.mkdir()
            seconds, peak = tool.restore(target)
            result.durable.seconds.append(seconds + flush_to_disk(target))
            restore_check(target)
            result.restore.seconds.append(seconds)
            result.restore.peak_rss = max(result.restore.peak_rss, peak)
            shutil.rmtree(base)
            stored, restored = result.store.seconds[-1], result.restore.seconds[-1]
            durable = result.durable.seconds[-1]
            print(
                f"  {name} run {i + 1}: store {stored:.2f} s, restore {restored:.2f} s "
                f"({durable:.2f} s until on disk)",
                file=sys.stderr,
            )
    return results


def restored_file_matches(expected: Path) -> Callable[[Path], None]:
    size = expected.stat().st_size

    def check(target: Path) -> None:
        found = [p for p in target.rglob("*") if p.is_file() and p.stat().st_size == size]
        if not found or not _same_bytes(found[0], expected):
            raise SystemExit(f"a restore below {target} does not match {expected}")

    return check


def restored_tree_matches(expected: int) -> Callable[[Path], None]:
    def check(target: Path) -> None:
        count = sum(1 for p in target.rglob("*.bin") if p.is_file())
        if count != expected:
            raise SystemExit(f"restored {count} of {expected} files below {target}")

    return check


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(MIB), fb.read(MIB)
            if x != y:
                return False
            if not x:
                return True


def ratio(mine: float, best: float, lower_is_better: bool = True) -> str:
    """How this tool compares with the best peer, as a factor of at least 1."""
    if not lower_is_better:
        mine, best = best, mine  # a higher value is the better one
    if mine <= best:
        return f"{best / mine:.2f}x " + ("faster" if lower_is_better else "better")
    return f"{mine / best:.2f}x " + ("slower" if lower_is_better else "worse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--only", default="store,tree,changed")
    args = parser.parse_args()
    only = set(args.only.split(","))

    # PYTHONDONTWRITEBYTECODE (set on some CI images) would have every metanode command
    # compile its modules afresh (0.07-0.12 s here); an installed copy has its bytecode.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("METANODE_", "RESTIC_")) and k != "PYTHONDONTWRITEBYTECODE"
    }
    peers = {name: cls for name, (exe, cls) in PEERS.items() if shutil.which(exe)}
    missing = sorted(set(PEERS) - set(peers))
    work = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=args.workdir))
    rows: list[tuple[str, ...]] = []
    try:
        data = work / "data"
        data.mkdir()
        mixed = data / "mixed.bin"
        if only & {"store", "changed"}:
            print(f"generating {args.size_mib} MiB of data in {work}", file=sys.stderr)
            make_mixed_file(mixed, args.size_mib, seed=1)

        def makers(with_rf3: bool = False) -> dict[str, Callable[[Path], Tool]]:
            tools: dict[str, Callable[[Path], Tool]] = {"metanode": lambda b: Metanode(b, env)}
            if with_rf3:
                tools["metanode rf=3"] = lambda b: Metanode(b, env, rf=3)
            for name, cls in peers.items():
                tools[name] = lambda b, cls=cls: cls(b, env)
            return tools

        mib = args.size_mib
        if "store" in only:
            res = measure(makers(True), work, args.runs, [mixed], restored_file_matches(mixed))
            rows += _time_rows(f"store {mib} MiB", res, "store", mib / 1, "MiB/s")
            rows += _time_rows(f"restore {mib} MiB", res, "restore", mib / 1, "MiB/s")
            rows += _time_rows(f"restore {mib} MiB, on disk", res, "durable", mib / 1, "MiB/s")
            rows += _memory_rows(res)
        if "tree" in only:
            tree = data / "tree"
            make_tree(tree, args.files, seed=2)
            res = measure(makers(), work, args.runs, [tree], restored_tree_matches(args.files))
            rows += _time_rows(f"store tree of {args.files:,} files", res, "store", args.files)
            rows += _time_rows(f"restore tree of {args.files:,}", res, "restore", args.files)
            rows += _time_rows(
                f"restore tree of {args.files:,}, on disk", res, "durable", args.files
            )
            tree_mib = args.files * 4096 / MIB
            for name, r in res.items():
                per_mib = statistics.median(r.objects) / tree_mib
                rows.append(("objects per MiB stored (tree)", name, f"{per_mib:.2f}", "", ""))
            shutil.rmtree(tree)
        if "changed" in only:
            changed = data / "changed.bin"
            make_changed_copy(mixed, changed, seed=3)
            res = measure(
                makers(), work, args.runs, [mixed, changed], restored_file_matches(changed)
            )
            logical = 2 * mixed.stat().st_size
            best = max(
                logical / statistics.median(r.stored)
                for name, r in res.items()
                if not name.startswith("metanode")
            )
            for name, r in res.items():
                stored = statistics.median(r.stored)
                rows.append(
                    (
                        "file + 1%-changed copy: logical / stored",
                        name,
                        f"{logical / stored:.2f}",
                        f"{stored / MIB:,.0f} MiB stored",
                        ratio(logical / stored, best, lower_is_better=False)
                        if name.startswith("metanode")
                        else "",
                    )
                )
            rows += _time_rows("restore the 1%-changed copy", res, "restore", mib, "MiB/s")
            rows += _time_rows("restore it, on disk", res, "durable", mib, "MiB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; medians of {args.runs} runs; peers: "
        + ", ".join(_version(p) for p in peers)
        + (f"; not installed: {', '.join(missing)}" if missing else "")
    )
    print_table(("work", "tool", "seconds / value", "rate", "against the best peer"), rows)


def _time_rows(
    work: str, res: dict[str, Result], which: str, amount: float, unit: str = "files/s"
) -> list[tuple[str, ...]]:
    timings = {name: getattr(r, which) for name, r in res.items()}
    peers = [t.median for name, t in timings.items() if not name.startswith("metanode")]
    best = min(peers) if peers else None
    rows = []
    for name, t in timings.items():
        against = ratio(t.median, best) if best is not None and name.startswith("metanode") else ""
        rows.append((work, name, f"{t.median:.2f}", f"{amount / t.median:,.1f} {unit}", against))
    return rows


def _memory_rows(res: dict[str, Result]) -> list[tuple[str, ...]]:
    return [
        (
            "peak memory (store / restore)",
            name,
            "",
            f"{r.store.peak_rss / MIB:.0f} / {r.restore.peak_rss / MIB:.0f} MiB",
            "",
        )
        for name, r in res.items()
    ]


def _version(exe: str) -> str:
    cmd = {"restic": ["restic", "version"], "borg": ["borg", "--version"]}.get(
        exe, ["rclone", "version"]
    )
    out = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    return out[0] if out else exe


if __name__ == "__main__":
    main()
