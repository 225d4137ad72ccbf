"""One host of a shared-map node, as its own process: ``python -m tests.shared_host HOME
COUNT SEED`` stores COUNT small objects one store (one commit) at a time and prints one
line per stored block, "block_id sha256", as soon as the store returns. Even-numbered
objects are the same on every host (dedup across hosts), odd ones the host's own.

Exits 12 (and prints the error) when the map database stops answering, like the CLI.
"""

from __future__ import annotations

import random
import sys
from hashlib import sha256
from pathlib import Path

from metanode_storage import Node, Secret
from metanode_storage.errors import MetanodeError
from tests.conftest import PASSPHRASE


def main(home: Path, count: int, seed: int) -> int:
    mine, common = random.Random(seed), random.Random(0)
    try:
        with Node.open(home, Secret(PASSPHRASE.encode())) as node:
            for i in range(count):
                shared = common.randbytes(4096)
                data = shared if i % 2 == 0 else mine.randbytes(4096)
                block = node.store_bytes(data, f"object-{seed}-{i}")
                print(block.block_id, sha256(data).hexdigest(), flush=True)
    except MetanodeError as exc:  # closing may fail too, once the database is gone
        print(f"error {int(exc.exit_code)} {exc}", file=sys.stderr, flush=True)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
