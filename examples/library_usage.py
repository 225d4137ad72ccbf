"""Using the engine from Python, with no CLI: store and retrieve from a script."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from metanode_storage import Node, Secret, init_node


def main() -> int:
    home = Path(os.environ.get("METANODE_HOME") or Path(tempfile.mkdtemp()) / "node")
    passphrase = Secret(os.environ.get("METANODE_PASSPHRASE", "library example pass").encode())
    if not (home / "config.toml").exists():
        init_node(home, passphrase)
    with Node.open(home, passphrase) as node:
        block = node.store_bytes(b"hello from a script", name="greeting.txt")
        assert node.retrieve_bytes(block.block_id) == b"hello from a script"
        print(block.block_id, block.data_hash, [loc.provider for loc in block.distribution_map])
        # Many objects at once: one map transaction, one audit transaction and one
        # signature for the batch (each block still gets its own self-contained proof).
        batch = node.store_many((f"artifact-{i}.txt", b"artifact %d" % i) for i in range(100))
        assert node.retrieve_bytes(batch[42].block_id) == b"artifact 42"
        print(len(batch), "blocks stored as one batch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
