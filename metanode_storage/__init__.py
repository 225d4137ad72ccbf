"""metanode-storage: store data across several object stores so no one provider can read,
lose or recognise it.

Scripts use the engine directly::

    from metanode_storage import Node, Secret
    with Node.open(home, Secret(b"passphrase")) as node:
        block = node.store_bytes(b"hello")
        assert node.retrieve_bytes(block.block_id) == b"hello"

The names below are imported on first use (PEP 562), so that `metanode --help` and shell
completion, which run the CLI on every TAB, do not load the engine, fsspec and the SDKs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metanode_storage.config.secrets import Secret
    from metanode_storage.engine.model import ContainerBlock, StorageLocation
    from metanode_storage.engine.node import Node
    from metanode_storage.engine.setup import init_node
    from metanode_storage.engine.verification import BlockVerification
    from metanode_storage.errors import MetanodeError

__version__ = "0.1.0"
_HOMES = {
    "BlockVerification": "metanode_storage.engine.verification",
    "ContainerBlock": "metanode_storage.engine.model",
    "MetanodeError": "metanode_storage.errors",
    "Node": "metanode_storage.engine.node",
    "Secret": "metanode_storage.config.secrets",
    "StorageLocation": "metanode_storage.engine.model",
    "init_node": "metanode_storage.engine.setup",
}
__all__ = [
    "BlockVerification",
    "ContainerBlock",
    "MetanodeError",
    "Node",
    "Secret",
    "StorageLocation",
    "__version__",
    "init_node",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'metanode_storage' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # once: later lookups do not come here
    return value
