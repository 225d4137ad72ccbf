from metanode_storage.cli.app import run

run()
