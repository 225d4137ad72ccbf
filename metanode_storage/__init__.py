"""metanode-storage: store data across several object stores so no one provider can read,
lose or recognise it.

Scripts use the engine directly::

    from metanode_storage import Node, Secret
    with Node.open(home, Secret(b"passphrase")) as node:
        block = node.store_bytes(b"hello")
        assert node.retrieve_bytes(block.block_id) == b"hello"
"""

from metanode_storage.config.secrets import Secret
from metanode_storage.engine.model import ContainerBlock, StorageLocation
from metanode_storage.engine.node import Node
from metanode_storage.engine.setup import init_node
from metanode_storage.engine.verification import BlockVerification
from metanode_storage.errors import MetanodeError

__version__ = "0.1.0"
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
